#!/usr/bin/env python3
"""A scattergather worker written in Python.

It serves one target of one flow, following the contract of
schemas/README.md: it reads the target's task topic read_committed in a
consumer group, decodes each Task (Avro single-object encoding), calls a
function over the task's payload, and writes one Result to the partition of
the results topic that the task names.

Each batch of tasks is answered in one Kafka transaction that also commits
the batch's offsets (send_offsets_to_transaction): a task's result and its
offset commit become visible together or not at all, so every task is
answered exactly once as a read_committed reader (the gather) sees it.

The function here is `price`: it answers {"price": base + n % 3 * 10} for a
payload {"n": n}. Replace it with a call to a real provider.

Usage:
    worker.py --bootstrap-servers 127.0.0.1:9092 --flow flights --target kayak

See README.md beside this file.
"""

import argparse
import io
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from fastavro.schema import parse_schema, to_parsing_canonical_form

log = logging.getLogger("pyworker")

# The .avsc files of the contract, read from the repository: the worker
# holds no copy of them.
SCHEMAS_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"

# Avro single-object encoding: this marker, then the writer schema's
# CRC-64-AVRO fingerprint (8 bytes, little-endian), then the Avro body.
MARKER = b"\xc3\x01"
HEADER_LEN = 10

# Exit status of --crash-after.
CRASH_EXIT = 3

# Dead-letter headers, as scattergather's own processors write them.
H_REASON = "sg-reason"
H_REASON_KIND = "sg-reason-kind"
H_STAGE = "sg-stage"
H_FLOW = "sg-flow"
H_TOPIC = "sg-source-topic"
H_PARTITION = "sg-source-partition"
H_OFFSET = "sg-source-offset"


# --- CRC-64-AVRO (Rabin) fingerprint, as the Avro specification defines it.

_EMPTY = 0xC15D213AA4D7A795
_MASK = 0xFFFFFFFFFFFFFFFF


def _table():
    out = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & (-(fp & 1) & _MASK))
        out.append(fp)
    return out


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """Returns the CRC-64-AVRO fingerprint of data as an unsigned integer."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


# --- Codec


class DecodeError(Exception):
    """A record that is not a Task this worker can read."""


class Codec:
    """Encodes Results and decodes Tasks in the single-object encoding."""

    def __init__(self, schemas_dir: Path = SCHEMAS_DIR):
        self.task_schema, self.task_fp = self._load(schemas_dir / "task.avsc")
        self.result_schema, self.result_fp = self._load(schemas_dir / "result.avsc")

    @staticmethod
    def _load(path: Path):
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        # Parsing Canonical Form, then its fingerprint in little-endian order.
        canonical = to_parsing_canonical_form(raw)
        fp = struct.pack("<Q", crc64_avro(canonical.encode("utf-8")))
        return parse_schema(raw), fp

    def decode_task(self, value: bytes) -> dict:
        if value is None or len(value) < HEADER_LEN or value[:2] != MARKER:
            raise DecodeError("not an Avro single-object encoding")
        fp = value[2:HEADER_LEN]
        if fp != self.task_fp:
            raise DecodeError("unknown schema fingerprint %s (a task is %s)" % (fp.hex(), self.task_fp.hex()))
        body = io.BytesIO(value[HEADER_LEN:])
        try:
            task = fastavro.schemaless_reader(body, self.task_schema)
        except Exception as e:  # fastavro raises several kinds on bad bytes
            raise DecodeError("malformed task body: %s" % e) from e
        if body.tell() != len(value) - HEADER_LEN:
            raise DecodeError("malformed task body: %d trailing bytes" % (len(value) - HEADER_LEN - body.tell()))
        return task

    def encode_result(self, result: dict) -> bytes:
        out = io.BytesIO()
        out.write(MARKER)
        out.write(self.result_fp)
        fastavro.schemaless_writer(out, self.result_schema, result)
        return out.getvalue()


# --- The function this worker serves


def price(base: int):
    """Returns a handler that prices a payload {"n": n} at base + n%3*10."""

    def handle(task: dict) -> bytes:
        req = json.loads(task["payload"])
        n = req.get("n") if isinstance(req, dict) else None
        if not isinstance(n, int) or isinstance(n, bool):
            raise ValueError('payload has no integer "n"')
        return json.dumps({"price": base + n % 3 * 10}).encode("utf-8")

    return handle


# --- The worker


class Worker:
    """Answers the tasks of one target, one transaction per batch."""

    def __init__(self, args, handler, codec: Codec):
        self.args = args
        self.handler = handler
        self.codec = codec
        self.running = True
        self.results_partitions = 0
        self.answered = 0
        extra = dict(args.config)
        self.consumer = Consumer({
            **extra,
            "bootstrap.servers": args.bootstrap_servers,
            "group.id": args.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "client.id": args.instance,
            # Static membership when the instance is named: a restart under
            # the same name takes its partitions back without a rebalance.
            **({"group.instance.id": args.instance} if args.instance_given else {}),
        })
        self.producer = Producer({
            **extra,
            "bootstrap.servers": args.bootstrap_servers,
            "transactional.id": args.transactional_id,
            "client.id": args.instance,
            "linger.ms": 5,
        })

    def stop(self, *_):
        self.running = False

    def _on_assign(self, consumer, partitions):
        log.info("partitions assigned: %s", ",".join(str(p.partition) for p in partitions))

    def _on_revoke(self, consumer, partitions):
        # No transaction is open while consume() runs (each batch commits
        # before the next poll), so there is nothing to finish here.
        log.info("partitions revoked: %s", ",".join(str(p.partition) for p in partitions))

    def run(self):
        md = self.consumer.list_topics(self.args.results_topic, timeout=30)
        topic = md.topics.get(self.args.results_topic)
        if topic is None or topic.error is not None:
            raise SystemExit("pyworker: results topic %s: %s" % (self.args.results_topic, topic.error if topic else "missing"))
        self.results_partitions = len(topic.partitions)
        self.producer.init_transactions(30)
        self.consumer.subscribe([self.args.tasks_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("worker started: flow %s, target %s, topic %s, group %s",
                 self.args.flow, self.args.target, self.args.tasks_topic, self.args.group)
        try:
            while self.running:
                # Wait for one task, then take what else has arrived: consume()
                # alone would wait for a full batch or its whole timeout.
                first = self.consumer.poll(0.5)
                if first is None:
                    continue
                msgs = [first]
                if self.args.batch > 1:
                    msgs += self.consumer.consume(num_messages=self.args.batch - 1, timeout=0)
                batch = []
                for m in msgs:
                    err = m.error()
                    if err is None:
                        batch.append(m)
                    elif err.fatal():
                        raise KafkaException(err)
                    else:
                        log.warning("consume: %s", err)
                if batch:
                    self._answer(batch)
        finally:
            self.consumer.close()
            self.producer.flush(10)
        log.info("worker stopped")

    def _answer(self, batch):
        """Answers batch in one transaction with its offsets; on an abortable
        failure, rewinds so that the batch runs again."""
        offsets = {}
        for m in batch:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        try:
            self.producer.begin_transaction()
            for m in batch:
                self._produce(self._record(m))
                self.answered += 1
                if self.answered == self.args.crash_after:
                    # Fault injection: the results reach the broker in a
                    # transaction that is never committed.
                    self.producer.flush(30)
                    log.warning("crashing after %d tasks, transaction open", self.answered)
                    os._exit(CRASH_EXIT)
            self.producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                self.consumer.consumer_group_metadata(), 30)
            while True:
                try:
                    self.producer.commit_transaction(30)
                    return
                except KafkaException as e:
                    if not e.args[0].retriable():
                        raise
                    log.warning("commit: %s; retrying", e.args[0])
        except KafkaException as e:
            err = e.args[0]
            if not err.txn_requires_abort():
                raise  # fatal: fenced by a newer instance, or unauthorised
            log.warning("transaction aborted, the batch runs again: %s", err)
            self.producer.abort_transaction(30)
            self._rewind(batch)

    def _rewind(self, batch):
        first = {}
        for m in batch:
            first.setdefault((m.topic(), m.partition()), m.offset())
        for (t, p), off in first.items():
            try:
                self.consumer.seek(TopicPartition(t, p, off))
            except KafkaException as e:
                # No longer assigned: the next owner resumes from the
                # committed offset.
                log.info("rewind %s[%d]: %s", t, p, e.args[0])

    def _produce(self, rec):
        while True:
            try:
                self.producer.produce(**rec)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _dead_letter(self, m, kind, reason):
        log.warning("task dead-lettered (%s): %s", kind, reason)
        return {
            "topic": self.args.dead_letter_topic,
            "key": m.key(),
            "value": m.value(),
            "headers": [
                (H_REASON, reason.encode()),
                (H_REASON_KIND, kind.encode()),
                (H_STAGE, b"worker"),
                (H_FLOW, self.args.flow.encode()),
                (H_TOPIC, m.topic().encode()),
                (H_PARTITION, str(m.partition()).encode()),
                (H_OFFSET, str(m.offset()).encode()),
            ],
        }

    def _record(self, m):
        """Returns the record that answers task record m: its Result, or its
        dead letter."""
        try:
            task = self.codec.decode_task(m.value())
        except DecodeError as e:
            return self._dead_letter(m, "undecodable", "undecodable task: %s" % e)
        # What cannot be answered is dead-lettered: a task of another flow
        # (its results belong to another results topic), without ids, or
        # naming no partition of the results topic.
        if task["flow"] != self.args.flow:
            return self._dead_letter(m, "unknown_flow", "task of flow %r in a task topic of flow %r" % (task["flow"], self.args.flow))
        if not task["request_id"] or not task["task_id"]:
            return self._dead_letter(m, "invalid_task", "task without request id or task id")
        part = task["results_partition"]
        if not 0 <= part < self.results_partitions:
            return self._dead_letter(m, "invalid_task", "task names results partition %d of %d" % (part, self.results_partitions))

        start = time.time()
        result = {
            "request_id": task["request_id"],
            "flow": task["flow"],
            "task_id": task["task_id"],
            "target": task["target"],
            "item": task["item"],
            "status": "OK",
            "payload": b"",
            "content_type": "application/json",
            "error": "",
            "attempts": 0,
            "duration_ms": 0,
            "worker": self.args.instance,
        }
        if task["target"] != self.args.target:
            # A task always gets an answer when it can have one: the gather
            # then reports its target failed rather than missing.
            reason = "task for target %s, which this worker does not serve here (topic of target %s)" % (
                json.dumps(task["target"]), json.dumps(self.args.target))
            log.warning("task answered ERROR without running (wrong_target): %s", reason)
            result.update(status="ERROR", error="worker: " + reason)
        elif start * 1000 > task["deadline_ms"]:
            # Too late to count: answer at once, without calling.
            result.update(status="ERROR", error="task deadline passed")
        else:
            result["attempts"] = 1
            try:
                answer = self.handler(task)
                if len(answer) > self.args.max_payload_bytes:
                    raise ValueError("answer exceeds %d bytes" % self.args.max_payload_bytes)
                result["payload"] = answer
            except Exception as e:  # the function's failure is the task's ERROR
                result.update(status="ERROR", error=str(e) or type(e).__name__)
        result["duration_ms"] = int((time.time() - start) * 1000)
        return {
            "topic": self.args.results_topic,
            "partition": part,
            "key": task["request_id"].encode("utf-8"),
            "value": self.codec.encode_result(result),
        }


def parse_args(argv):
    p = argparse.ArgumentParser(description="scattergather worker in Python: serves one target of one flow.")
    p.add_argument("--bootstrap-servers", required=True, help="seed brokers, e.g. 127.0.0.1:9092")
    p.add_argument("--flow", required=True, help="the flow's name")
    p.add_argument("--target", required=True, help="the target this worker serves")
    p.add_argument("--group-prefix", default="scattergather",
                   help="the topology's kafka.group_prefix (default scattergather)")
    p.add_argument("--group", help="consumer group (default <group-prefix>.<flow>.worker.<target>)")
    p.add_argument("--tasks-topic", help="task topic (default <flow>.tasks.<target>)")
    p.add_argument("--results-topic", help="results topic (default <flow>.results)")
    p.add_argument("--dead-letter-topic", help="dead-letter topic (default <flow>.dlq)")
    p.add_argument("--instance",
                   help="stable identity of this worker instance: the results' worker field, the consumer's "
                        "group.instance.id and part of the transactional.id (default python-<host>-<pid>, "
                        "without static membership)")
    p.add_argument("--transactional-id", help="producer transactional.id (default <group>.<instance>)")
    p.add_argument("--base-price", type=int, default=100, help="the price function's base")
    p.add_argument("--batch", type=int, default=100, help="tasks per transaction at most")
    p.add_argument("--max-payload-bytes", type=int, default=900 << 10,
                   help="largest answer; a larger one is an ERROR (the flow's limits.max_payload_bytes)")
    p.add_argument("-X", dest="config", action="append", default=[], metavar="KEY=VALUE",
                   help="extra librdkafka setting for both clients, e.g. -X security.protocol=SASL_SSL")
    p.add_argument("--fingerprints", action="store_true", help="print the task and result fingerprints and exit")
    p.add_argument("--crash-after", type=int, default=0, metavar="N",
                   help="for tests of exactly-once: exit with status %d, without committing, once the results "
                        "of N tasks are written" % CRASH_EXIT)
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error("--batch must be at least 1")
    args.instance_given = args.instance is not None
    args.instance = args.instance or "python-%s-%d" % (socket.gethostname(), os.getpid())
    args.group = args.group or "%s.%s.worker.%s" % (args.group_prefix, args.flow, args.target)
    args.tasks_topic = args.tasks_topic or "%s.tasks.%s" % (args.flow, args.target)
    args.results_topic = args.results_topic or "%s.results" % args.flow
    args.dead_letter_topic = args.dead_letter_topic or "%s.dlq" % args.flow
    args.transactional_id = args.transactional_id or "%s.%s" % (args.group, args.instance)
    pairs = []
    for kv in args.config:
        k, sep, v = kv.partition("=")
        if not sep:
            p.error("-X %s: want KEY=VALUE" % k)
        pairs.append((k, v))
    args.config = pairs
    return args


def main(argv=None):
    if "--fingerprints" in (argv if argv is not None else sys.argv[1:]):
        codec = Codec()
        print("task", codec.task_fp.hex())
        print("result", codec.result_fp.hex())
        return 0
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s pyworker: %(message)s")
    w = Worker(args, price(args.base_price), Codec())
    signal.signal(signal.SIGTERM, w.stop)
    signal.signal(signal.SIGINT, w.stop)
    w.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
