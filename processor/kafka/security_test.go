package kafka_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/scattergather/scattergather/internal/processortest"
	"github.com/scattergather/scattergather/processor/admin"
	"github.com/scattergather/scattergather/processor/kafka"
	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// conn is the kafka section of a test topology. The password is never
// written into the YAML: it is read from the environment variable
// passwordVar, as a deployment would.
type conn struct {
	brokers               []string
	mechanism, user       string
	passwordVar           string // ${passwordVar}; "" for no sasl section
	passwordPrefix        string // prepended to the password (a wrong one)
	tls                   bool
	ca, cert, key, server string
}

func (c conn) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "brokers: [%s]\n", strings.Join(c.brokers, ", "))
	if c.passwordVar != "" {
		fmt.Fprintf(&b, "sasl: {mechanism: %s, username: %s, password: \"%s${%s}\"}\n", c.mechanism, c.user, c.passwordPrefix, c.passwordVar)
	}
	if c.tls {
		fmt.Fprintf(&b, "tls:\n  enabled: true\n")
		for _, kv := range [][2]string{{"ca_file", c.ca}, {"cert_file", c.cert}, {"key_file", c.key}, {"server_name", c.server}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "  %s: %s\n", kv[0], kv[1])
			}
		}
	}
	return b.String()
}

const oneTargetFlow = "timeout: 5s\ntargets: [{name: a}]"

// pki is a throw-away CA with a server certificate for 127.0.0.1 and
// localhost and a client certificate, and a second CA with its own client
// certificate, as PEM files in a temporary directory.
type pki struct {
	ca, clientCert, clientKey             string // files
	otherCA, otherClientCert, otherClient string // files
	server                                tls.Certificate
	pool                                  *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, other := processortest.NewCA(t, "test CA"), processortest.NewCA(t, "other CA")
	client := func(ca *processortest.CA, prefix string) (string, string) {
		c, k := ca.Client(t, "alice")
		return processortest.WriteCert(t, dir, prefix+"client.pem", c), processortest.WriteKey(t, dir, prefix+"client-key.pem", k)
	}
	p := &pki{ca: processortest.WriteCert(t, dir, "ca.pem", ca.Cert), otherCA: processortest.WriteCert(t, dir, "other-ca.pem", other.Cert), pool: x509.NewCertPool()}
	p.pool.AddCert(ca.Cert)
	p.clientCert, p.clientKey = client(ca, "")
	p.otherClientCert, p.otherClient = client(other, "other-")
	sc, sk := ca.Server(t, "localhost")
	p.server = tls.Certificate{Certificate: [][]byte{sc.Raw}, PrivateKey: sk, Leaf: sc}
	return p
}

// fakePassword is the SASL password of the kfake clusters, handed to the
// topologies through the environment variable fakePasswordVar.
const (
	fakePassword    = "fake-Sasl-pw-7c1e"
	fakePasswordVar = "SG_TEST_FAKE_SASL_PASSWORD"
)

// secureFake starts a kfake cluster that, like the SASL_SSL listener of
// scripts/kafka.sh, requires TLS with a client certificate signed by p's
// CA, then SASL (alice with fakePassword, by PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512).
//
// kfake closes the connection on a wrong password where Kafka answers
// SASL_AUTHENTICATION_FAILED; for PLAIN, a control function answers as
// Kafka does.
func secureFake(t *testing.T, p *pki) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser(topology.SASLPlain, "alice", fakePassword),
		kfake.Superuser(topology.SASLScramSHA256, "alice", fakePassword),
		kfake.Superuser(topology.SASLScramSHA512, "alice", fakePassword),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs: p.pool, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.SASLAuthenticateRequest)
		parts := strings.Split(string(r.SASLAuthBytes), "\x00") // PLAIN: authzid, user, password
		if len(parts) != 3 || (parts[1] == "alice" && parts[2] == fakePassword) {
			return nil, nil, false // SCRAM, or PLAIN with the right password: as kfake does
		}
		resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	return c.ListenAddrs()
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// hangingUp returns the address of a listener that, as a Kafka plaintext
// listener does with a TLS handshake, reads the first bytes and closes.
// (kfake waits for the 369MB request the TLS record header announces.)
func hangingUp(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 4))
				_ = c.(*net.TCPConn).CloseWrite()
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String()
}

// checkConnectErr checks that err is a *ConnectError containing want,
// permanent or not as wanted, and that it does not show password.
func checkConnectErr(t *testing.T, err error, want string, permanent bool, password string) {
	t.Helper()
	var ce *kafka.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *kafka.ConnectError", err, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error\n%v\nwant one containing %q", err, want)
	}
	if got := kafka.IsPermanent(err); got != permanent {
		t.Errorf("IsPermanent = %v, want %v: %v", got, permanent, err)
	}
	if password != "" && strings.Contains(err.Error(), password) {
		t.Errorf("the password shows in the error: %v", err)
	}
}

func TestTLSConfig(t *testing.T) {
	p := newPKI(t)
	cfg, err := kafka.TLSConfig(nil)
	if cfg != nil || err != nil {
		t.Errorf("nil TLS: %v %v", cfg, err)
	}
	off := false
	if cfg, err := kafka.TLSConfig(&topology.TLS{Enabled: &off, CAFile: "/nope"}); cfg != nil || err != nil {
		t.Errorf("enabled: false: %v %v", cfg, err)
	}
	cfg, err = kafka.TLSConfig(&topology.TLS{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: "k.example"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "k.example" || cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("config %+v", cfg)
	}
	cfg, err = kafka.TLSConfig(&topology.TLS{InsecureSkipVerify: true})
	if err != nil || cfg.RootCAs != nil || !cfg.InsecureSkipVerify {
		t.Errorf("insecure_skip_verify: %+v %v", cfg, err)
	}

	for _, tc := range []struct {
		tls     topology.TLS
		wantKey string
	}{
		{topology.TLS{CAFile: filepath.Join(t.TempDir(), "gone.pem")}, "kafka.tls.ca_file"},
		{topology.TLS{CAFile: p.clientKey}, "kafka.tls.ca_file"},
		{topology.TLS{CertFile: p.clientCert, KeyFile: p.otherClient}, "kafka.tls.cert_file/key_file"},
	} {
		_, err := kafka.TLSConfig(&tc.tls)
		var fe *kafka.TLSFileError
		if !errors.As(err, &fe) || fe.Key != tc.wantKey || !strings.HasPrefix(err.Error(), "kafka: "+tc.wantKey+": ") {
			t.Errorf("%+v: error %v, want a *TLSFileError for %s", tc.tls, err, tc.wantKey)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("the error quotes a key: %v", err)
		}
	}
}

// TestPreflightFake runs the connection checks against in-process brokers
// that require TLS with a client certificate and SASL: each misconfiguration
// is named, and the ones no retry cures are permanent.
func TestPreflightFake(t *testing.T) {
	p := newPKI(t)
	t.Setenv(fakePasswordVar, fakePassword)
	secure := secureFake(t, p)
	hangUp := hangingUp(t)
	good := conn{brokers: secure, mechanism: topology.SASLScramSHA256, user: "alice", passwordVar: fakePasswordVar,
		tls: true, ca: p.ca, cert: p.clientCert, key: p.clientKey}

	// The file of a validated topology that goes missing before the run.
	gone := filepath.Join(t.TempDir(), "ca.pem")
	if b, err := os.ReadFile(p.ca); err != nil || os.WriteFile(gone, b, 0o600) != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		edit      func(c *conn)
		after     func() // after the topology is loaded
		want      string // "" for success
		permanent bool
	}{
		{name: "SCRAM-SHA-256 over mutual TLS", edit: func(c *conn) {}},
		{name: "SCRAM-SHA-512", edit: func(c *conn) { c.mechanism = topology.SASLScramSHA512 }},
		{name: "PLAIN", edit: func(c *conn) { c.mechanism = topology.SASLPlain }},
		{name: "wrong password", edit: func(c *conn) { c.mechanism, c.passwordPrefix = topology.SASLPlain, "not-" },
			want: "kafka: authentication failed for user alice (SASL PLAIN): check kafka.sasl.username/password", permanent: true},
		{name: "unknown user", edit: func(c *conn) { c.mechanism, c.user = topology.SASLPlain, "mallory" },
			want: "authentication failed for user mallory (SASL PLAIN)", permanent: true},
		{name: "untrusted CA", edit: func(c *conn) { c.ca = p.otherCA },
			want: "kafka: TLS: the broker's certificate is not trusted: check kafka.tls.ca_file", permanent: true},
		{name: "system roots", edit: func(c *conn) { c.ca = "" },
			want: "TLS: the broker's certificate is not trusted", permanent: true},
		{name: "wrong server name", edit: func(c *conn) { c.server = "kafka.example" },
			want: "TLS: the broker's certificate is not valid for the name dialled: check kafka.brokers or kafka.tls.server_name", permanent: true},
		{name: "no client certificate", edit: func(c *conn) { c.cert, c.key = "", "" },
			want: "kafka: TLS: the broker requires a client certificate: set kafka.tls.cert_file and key_file", permanent: true},
		{name: "client certificate of another CA", edit: func(c *conn) { c.cert, c.key = p.otherClientCert, p.otherClient },
			want: "TLS: the broker refused the client certificate: check kafka.tls.cert_file and key_file", permanent: true},
		{name: "TLS to a plaintext listener", edit: func(c *conn) { c.brokers, c.passwordVar = []string{hangUp}, "" },
			want: "TLS: the broker closed the connection during the handshake: is it a TLS listener?", permanent: true},
		{name: "CA file gone since validation", edit: func(c *conn) { c.ca = gone }, after: func() { os.Remove(gone) },
			want: "kafka: TLS: cannot load kafka.tls.ca_file", permanent: true},
		{name: "connection refused", edit: func(c *conn) { c.brokers = []string{closedPort(t)} },
			want: "cannot connect to the brokers (connection refused): is Kafka running there? check kafka.brokers", permanent: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			topo, _ := processortest.KafkaTopology(t, c.yaml(), oneTargetFlow)
			if tc.after != nil {
				tc.after()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a safety net only
			defer cancel()
			err := kafka.Preflight(ctx, topo)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("Preflight ran into the safety net: %v", err)
			}
			checkConnectErr(t, err, tc.want, tc.permanent, fakePassword)
		})
	}
}

// TestUnreachableBrokersAreNotPermanent: a broker that does not answer (it
// may be restarting) is no reason to stop a role for good: the preflight
// check only logs it, and the role fails, if at all, as its clients do, so
// that the supervisor runs it again.
func TestUnreachableBrokersAreNotPermanent(t *testing.T) {
	topo, _ := processortest.KafkaTopology(t, "brokers: ["+closedPort(t)+"]", oneTargetFlow)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := kafka.NewScatter(topo, topo.Flows[0]).Run(ctx)
	var ce *kafka.ConnectError
	if errors.As(err, &ce) || kafka.IsPermanent(err) {
		t.Errorf("Run: %v, want the clients' own, retryable error", err)
	}
}

// failingRoles checks that topics create and check, and every role, stop
// with a permanent error containing want instead of retrying, and that the
// error does not show password.
func failingRoles(t *testing.T, topo *topology.Topology, want, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a safety net only
	defer cancel()
	check := func(what string, err error) {
		t.Helper()
		if ctx.Err() != nil {
			t.Fatalf("%s ran into the safety net: %v", what, err)
		}
		if err == nil {
			t.Fatalf("%s succeeded", what)
		}
		if !kafka.IsPermanent(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error\n%v\nwant a permanent one containing %q", what, err, want)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the password shows in the error: %v", what, err)
		}
	}
	start := time.Now()
	_, err := admin.CreateTopics(ctx, topo, nil)
	check("CreateTopics", err)
	t.Logf("CreateTopics failed in %s: %v", time.Since(start).Round(time.Millisecond), err)
	check("CheckTopics", kafka.CheckTopics(ctx, topo, topo.Flows[0]))
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(), kafka.WithHandler("a", priceHandler(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runners {
		check(fmt.Sprintf("%T.Run", r), r.Run(ctx))
	}
	// Supervised, a permanent failure stops everything.
	check("RunAll", kafka.RunAll(ctx, runners...))
	t.Logf("topics create, topics check, %d roles and RunAll all failed as expected in %s", len(runners), time.Since(start).Round(time.Millisecond))
}

func TestRolesStopOnSecurityFailureFake(t *testing.T) {
	p := newPKI(t)
	t.Setenv(fakePasswordVar, fakePassword)
	c := conn{brokers: secureFake(t, p), mechanism: topology.SASLPlain, user: "alice", passwordVar: fakePasswordVar,
		passwordPrefix: "wrong-", tls: true, ca: p.ca, cert: p.clientCert, key: p.clientKey}
	topo, _ := processortest.KafkaTopology(t, c.yaml(), oneTargetFlow)
	failingRoles(t, topo, "authentication failed for user alice (SASL PLAIN): check kafka.sasl.username/password", fakePassword)
}

// secureConn is the kafka section that reaches the real broker's SASL_SSL
// listener with the right credentials.
func secureConn(s processortest.SecureInfo) conn {
	return conn{brokers: s.Brokers, mechanism: s.Mechanism, user: s.User, passwordVar: processortest.EnvSASLPassword,
		tls: true, ca: s.CAFile, cert: s.CertFile, key: s.KeyFile}
}

// TestIntegrationSecurePipeline runs the cheapest-offer pipeline end to end
// over the real broker's SASL_SSL listener: topics, every role, requests
// sent and aggregates read, each client with TLS, a client certificate and
// SCRAM.
func TestIntegrationSecurePipeline(t *testing.T) {
	s := processortest.SecureBroker(t)
	topo, f := processortest.KafkaTopology(t, secureConn(s).yaml(), `
timeout: 10s
targets: [{name: a}, {name: b}, {name: c}]
strategy: {type: all}
consolidate: {type: min, field: price}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafka.Preflight(ctx, topo); err != nil {
		t.Fatal(err)
	}
	res, err := admin.CreateTopics(ctx, topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || !r.Created {
			t.Fatalf("topic %s: created %v, %v", r.Topic, r.Created, r.Err)
		}
	}
	if err := kafka.CheckTopics(ctx, topo, f); err != nil {
		t.Fatal(err)
	}
	runners, err := kafka.Roles(topo, topo.Flows, kafka.RoleAll, t.TempDir(),
		kafka.WithHandler("a", priceHandler(100)), kafka.WithHandler("b", priceHandler(95)), kafka.WithHandler("c", priceHandler(105)))
	if err != nil {
		t.Fatal(err)
	}
	processortest.Start(t, runners...)

	const n = 20
	processortest.Send(t, topo, requests(f.Name, n)...)

	// processortest.Aggregates reads without TLS or SASL; admin.NewReader
	// connects as the topology says.
	rd, err := admin.NewReader(topo, f.Topics.Aggregated, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	aggs := map[string]*schemas.Aggregate{}
	for len(aggs) < n {
		recs, err := rd.Poll(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d aggregates after 2m", len(aggs), n)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			var a schemas.Aggregate
			if err := schemas.DecodeInto(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			if _, dup := aggs[a.RequestID]; dup {
				t.Errorf("two aggregates for %s", a.RequestID)
			}
			aggs[a.RequestID] = &a
		}
	}
	checkCheapest(t, aggs, n)
}

// TestIntegrationSecureFailures: against the real broker's SASL_SSL
// listener, a wrong password, an untrusted CA and a missing client
// certificate each stop topics create and every role at once, with an
// error that names the cause and the setting and never shows the password.
func TestIntegrationSecureFailures(t *testing.T) {
	s := processortest.SecureBroker(t)
	for _, tc := range []struct {
		name string
		edit func(c *conn)
		want string
	}{
		{"wrong password", func(c *conn) { c.passwordPrefix = "wrong-" },
			fmt.Sprintf("kafka: authentication failed for user %s (SASL %s): check kafka.sasl.username/password", s.User, s.Mechanism)},
		{"untrusted CA", func(c *conn) { c.ca = s.UntrustedCAFile },
			"kafka: TLS: the broker's certificate is not trusted: check kafka.tls.ca_file"},
		{"no client certificate", func(c *conn) { c.cert, c.key = "", "" },
			"kafka: TLS: the broker requires a client certificate: set kafka.tls.cert_file and key_file"},
		{"no TLS", func(c *conn) { c.tls = false },
			"kafka: the broker speaks TLS and the client does not"},
		{"no SASL", func(c *conn) { c.passwordVar = "" },
			"kafka: the broker closed the connection after the first request: it may require SASL: set kafka.sasl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := secureConn(s)
			tc.edit(&c)
			topo, _ := processortest.KafkaTopology(t, c.yaml(), oneTargetFlow)
			failingRoles(t, topo, tc.want, s.Password)
		})
	}
}

// TestIntegrationSecureMechanisms: the SASL_SSL listener of scripts/kafka.sh
// enables SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN for its user.
func TestIntegrationSecureMechanisms(t *testing.T) {
	s := processortest.SecureBroker(t)
	for _, m := range []string{topology.SASLScramSHA256, topology.SASLScramSHA512, topology.SASLPlain} {
		t.Run(m, func(t *testing.T) {
			c := secureConn(s)
			c.mechanism = m
			topo, _ := processortest.KafkaTopology(t, c.yaml(), oneTargetFlow)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := kafka.Preflight(ctx, topo); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestIntegrationSecureDeniedWrites: against the real broker's ACLs, a
// gather whose principal may not write the dead-letter topic, or the
// results topic its ticks go to, stops with one permanent error naming the
// topic and what to grant, instead of aborting its transactions again and
// again or leaving quiet partitions' deadlines to stall.
func TestIntegrationSecureDeniedWrites(t *testing.T) {
	s := processortest.SecureBroker(t)
	plain := processortest.Brokers(t) // User:ANONYMOUS, a super user: sets the ACLs
	cl, err := kgo.NewClient(kgo.SeedBrokers(plain...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	user := "User:" + s.User
	for _, tc := range []struct {
		name  string
		topic func(f *topology.Flow) string
		raw   bool // an undecodable result, for the gather to dead-letter
		want  string
	}{
		{"dead-letter topic", func(f *topology.Flow) string { return f.Topics.DeadLetter }, true, "TOPIC_AUTHORIZATION_FAILED: grant WRITE on it"},
		{"results topic (ticks)", func(f *topology.Flow) string { return f.Topics.Results }, false, "may not WRITE to it: grant WRITE on it to the gather's principal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo, f := processortest.KafkaTopology(t, secureConn(s).yaml(), `
timeout: 2s
partitions: 1
targets: [{name: a}]
`)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := admin.CreateTopics(ctx, topo, nil); err != nil {
				t.Fatal(err)
			}
			topic := tc.topic(f)
			// Everything on the topic, but WRITE: a DENY wins over an ALLOW.
			for _, b := range []*kadm.ACLBuilder{
				kadm.NewACLs().Topics(topic).Allow(user).Operations(kadm.OpAll),
				kadm.NewACLs().Topics(topic).Deny(user).Operations(kadm.OpWrite),
			} {
				res, err := adm.CreateACLs(ctx, b)
				if err == nil {
					for _, r := range res {
						err = errors.Join(err, r.Err)
					}
				}
				if err != nil {
					t.Fatalf("create ACLs: %v", err)
				}
			}
			if tc.raw {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: f.Topics.Results, Value: []byte("not avro")}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			g, err := kafka.NewGather(topo, f, t.TempDir(), kafka.WithInstance("g"))
			if err != nil {
				t.Fatal(err)
			}
			err = g.Run(ctx)
			if err == nil || !kafka.IsPermanent(err) || !strings.Contains(err.Error(), topic) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("gather: %v; want a permanent error naming %s and %q", err, topic, tc.want)
			}
			if strings.Contains(err.Error(), s.Password) {
				t.Errorf("the error shows the password")
			}
		})
	}
}
