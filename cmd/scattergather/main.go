// Command scattergather runs and operates scatter-gather flows on Kafka.
//
//	scattergather run      --topology F --role scatter|worker|gather|all [--flow X]
//	scattergather demo     the whole pipeline on an in-process broker
//	scattergather validate --topology F
//	scattergather topics   create|check --topology F [--flow X]
//	scattergather send     --topology F --flow X [payload]
//	scattergather tail     --topology F --flow X
//	scattergather replay   --topology F --flow X --stage scatter|gather --to earliest|TIME|OFFSET
//
// Run `scattergather <command> --help` for each command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scattergather/scattergather/processor/topology"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) int
}

// env is what a command gets besides its arguments.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
}

var commands []command

func init() {
	commands = []command{
		{"run", "run roles of the flows against a Kafka cluster", cmdRun},
		{"demo", "run the example flow on an in-process broker with simulated providers", cmdDemo},
		{"validate", "check a topology file and print every problem", cmdValidate},
		{"topics", "create or check the flows' topics", cmdTopics},
		{"send", "send requests (JSON in, Avro on the wire)", cmdSend},
		{"tail", "print aggregates as JSON lines", cmdTail},
		{"replay", "reset a stage's consumer group to replay its input", cmdReplay},
		{"bench", "measure throughput and latency against a real broker", cmdBench},
		{"providers", "serve the demo's simulated flight-price providers over HTTP", cmdProviders},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: scattergather <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'scattergather <command> --help' for the flags of a command.")
}

// run runs the command in args and returns its exit code. It stops on
// SIGINT or SIGTERM, or when ctx ends.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.LookupEnv}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "scattergather: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// flags is a flag set with the options most commands share.
type flags struct {
	*flag.FlagSet
	topology  string
	brokers   string
	logLevel  string
	logFormat string
}

func newFlags(e *env, name, synopsis string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	f := &flags{FlagSet: fs}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: scattergather %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return f
}

func (f *flags) topologyFlags() {
	f.StringVar(&f.topology, "topology", "topology.yaml", "topology `file`")
	f.StringVar(&f.brokers, "brokers", "", "seed brokers, comma-separated (overrides kafka.brokers of the topology)")
}

func (f *flags) logFlags() {
	f.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
}

// parse parses args; it returns false and the exit code when the command
// must stop (help asked: 0; bad flags: 2).
func (f *flags) parse(args []string) (int, bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

func (f *flags) usageError(format string, args ...any) int {
	fmt.Fprintf(f.Output(), "scattergather %s: %s\n", f.Name(), fmt.Sprintf(format, args...))
	f.Usage()
	return exitUsage
}

func (f *flags) logger(e *env) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(e.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(e.stderr, opts)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q: want text or json", f.logFormat)
}

// load reads the topology and applies the flag overrides.
func (f *flags) load(e *env) (*topology.Topology, error) {
	data, err := os.ReadFile(f.topology)
	if err != nil {
		return nil, err
	}
	var overrides []topology.Override
	if f.brokers != "" {
		overrides = append(overrides, topology.Override{Path: "kafka.brokers", Set: func(t *topology.Topology) {
			t.Kafka.Brokers = strings.Split(f.brokers, ",")
		}})
	}
	return topology.Parse(f.topology, data, e.getenv, overrides...)
}

// selectFlows returns the flows named in list (comma-separated), or all.
func selectFlows(t *topology.Topology, list string) ([]*topology.Flow, error) {
	if list == "" {
		return t.Flows, nil
	}
	var out []*topology.Flow
	for _, name := range strings.Split(list, ",") {
		f := t.Flow(strings.TrimSpace(name))
		if f == nil {
			return nil, fmt.Errorf("no flow %q in %s", name, t.File)
		}
		out = append(out, f)
	}
	return out, nil
}

func fail(e *env, cmd string, err error) int {
	fmt.Fprintf(e.stderr, "scattergather %s: %v\n", cmd, err)
	return exitFail
}
