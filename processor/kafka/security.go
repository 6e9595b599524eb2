package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/scattergather/scattergather/processor/topology"
)

// PreflightTimeout bounds Preflight: how long the brokers have to answer
// one metadata request on a fresh connection (dial, TLS handshake, SASL).
const PreflightTimeout = 10 * time.Second

// securityOpts returns the TLS and SASL options of k's clients. TLS files
// are read on every call, so a restarted role picks up renewed
// certificates. Validation has checked the files; if one has become
// unreadable since, every dial fails with a *TLSFileError, which Preflight
// reports as permanent.
func securityOpts(k *topology.Kafka) []kgo.Opt {
	var opts []kgo.Opt
	if k.TLS.On() {
		cfg, err := TLSConfig(k.TLS)
		if err != nil {
			return []kgo.Opt{kgo.Dialer(func(context.Context, string, string) (net.Conn, error) { return nil, err })}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if m := saslMechanism(k.SASL); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// saslMechanism returns the franz-go mechanism of s, or nil without SASL.
// Validation guarantees a known mechanism.
func saslMechanism(s *topology.SASL) sasl.Mechanism {
	if s == nil {
		return nil
	}
	switch s.Mechanism {
	case topology.SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case topology.SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case topology.SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// TLSFileError is a file of kafka.tls that cannot be used.
type TLSFileError struct {
	Key  string // the topology key: kafka.tls.ca_file, ...
	File string
	Err  error
}

func (e *TLSFileError) Error() string {
	return fmt.Sprintf("kafka: %s: %s: %v", e.Key, e.File, e.Err)
}

func (e *TLSFileError) Unwrap() error { return e.Err }

// TLSConfig builds the client TLS configuration of t (TLS 1.2 at least),
// reading its files. It returns nil, nil when TLS is off. Its errors name
// the file and its key, never the file's contents. The caller owns the
// returned config.
func TLSConfig(t *topology.TLS) (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // the user's explicit choice, documented as for tests only
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &TLSFileError{"kafka.tls.ca_file", t.CAFile, unwrapPath(err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, &TLSFileError{"kafka.tls.ca_file", t.CAFile, errors.New("no PEM certificate")}
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, &TLSFileError{"kafka.tls.cert_file/key_file", t.CertFile + ", " + t.KeyFile, unwrapPath(err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

// ConnectError says why a client could not talk to the brokers, naming
// the cause and the setting to check. Its message never holds the SASL
// password.
type ConnectError struct {
	// Reason is what went wrong, e.g. "TLS: the broker's certificate is
	// not trusted".
	Reason string
	// Hint names what to check, e.g. "check kafka.tls.ca_file".
	Hint string
	// Brokers are the addresses tried.
	Brokers []string
	// Err is the client's error.
	Err error

	detail string // Err's message, without the password
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("kafka: %s: %s (brokers %s: %s)", e.Reason, e.Hint, strings.Join(e.Brokers, ","), e.detail)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Preflight checks that the brokers of t accept a connection as the
// roles make it — dial, TLS handshake, SASL authentication, one metadata
// request — within PreflightTimeout. Each seed broker is tried once; the
// first that answers ends the check.
//
// Configuration problems that no retry cures (wrong credentials, an
// untrusted or mismatched certificate, a client certificate missing or
// refused, TLS or SASL on one side only) are returned as a *Permanent
// holding a *ConnectError. Brokers that cannot be reached (refused, not
// resolved, no answer in time) give a plain *ConnectError. When ctx ends,
// ctx's error is returned.
//
// The roles (Run) and CreateTopics and CheckTopics run it first and stop
// on a permanent error; an unreachable broker they only log, and go on as
// before: their clients retry, so a broker that is restarting delays them
// no more than it would without the check.
func Preflight(ctx context.Context, t *topology.Topology, opts ...Opt) error {
	return check(ctx, t, commonOptions(opts))
}

// PreflightOrWarn is Preflight as the roles and the topic commands run it:
// it returns permanent errors and ctx's, and logs the others (with the
// logger of WithLogger), whose clients keep retrying.
func PreflightOrWarn(ctx context.Context, t *topology.Topology, opts ...Opt) error {
	return preflight(ctx, t, commonOptions(opts))
}

// preflight is the check at the start of the roles and the topic
// commands: it returns permanent errors and ctx's, and logs the others.
func preflight(ctx context.Context, t *topology.Topology, o *options) error {
	err := check(ctx, t, o)
	if err == nil || IsPermanent(err) || ctx.Err() != nil {
		return err
	}
	o.logger.Warn("kafka: the brokers do not answer yet; the clients keep trying", "err", err)
	return nil
}

func check(ctx context.Context, t *topology.Topology, o *options) error {
	cl, err := kgo.NewClient(baseOpts(t, o, "preflight")...)
	if err != nil {
		return errorf("preflight client: %w", err)
	}
	defer cl.Close()
	var ce *ConnectError
	var permanent, again bool
	for attempt := 0; attempt < 2; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, PreflightTimeout)
		err = cl.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ce, permanent, again = classify(err, &t.Kafka)
		if !again || attempt == 1 {
			break
		}
		// An immediate close is what a TLS or SASL mismatch looks like, but
		// also what a broker that is shutting down does: look twice.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if permanent {
		return &PermanentError{Err: ce}
	}
	return ce
}

// withoutPassword returns text with the SASL password, whatever its
// length, replaced by REDACTED. A password shorter than 4 bytes would leave
// the text unreadable once replaced (a one-letter password is in almost
// every word): a text that contains one is withheld whole.
func withoutPassword(text string, s *topology.SASL) string {
	switch {
	case s == nil || s.Password == "" || !strings.Contains(text, s.Password):
		return text
	case len(s.Password) < 4:
		return "(detail withheld: it could show the SASL password)"
	default:
		return strings.ReplaceAll(text, s.Password, "REDACTED")
	}
}

// Alert texts of crypto/tls (alert.go) by which a broker refuses the
// client's certificate.
var certAlerts = []string{
	"bad certificate", "certificate required", "unknown certificate authority",
	"unknown certificate", "unsupported certificate", "expired certificate", "revoked certificate",
}

// classify turns err into a ConnectError, and says whether it is
// permanent and whether it is worth a second look.
func classify(err error, k *topology.Kafka) (ce *ConnectError, permanent, again bool) {
	ce = &ConnectError{Brokers: k.Brokers, Err: err, detail: withoutPassword(err.Error(), k.SASL)}
	set := func(reason, hint string) { ce.Reason, ce.Hint = reason, hint }
	tlsOn, saslOn := k.TLS.On(), k.SASL != nil
	haveCert := tlsOn && k.TLS.CertFile != ""

	var (
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalid    x509.CertificateInvalidError
		verifyErr  *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		fileErr    *TLSFileError
		firstEOF   *kgo.ErrFirstReadEOF
		opErr      *net.OpError
		dnsErr     *net.DNSError
		remoteText string
	)
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		remoteText = opErr.Err.Error()
	}
	switch {
	case errors.As(err, &fileErr):
		set("TLS: cannot load "+fileErr.Key, "fix the file or the path")
		return ce, true, false

	case errors.Is(err, kerr.SaslAuthenticationFailed):
		set(fmt.Sprintf("authentication failed for user %s (SASL %s)", k.SASL.Username, k.SASL.Mechanism),
			"check kafka.sasl.username/password")
		return ce, true, false
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		set(fmt.Sprintf("the broker does not offer SASL %s", k.SASL.Mechanism), "check kafka.sasl.mechanism against the broker's sasl.enabled.mechanisms")
		return ce, true, false
	case errors.Is(err, kerr.IllegalSaslState) && saslOn:
		set("the broker does not expect SASL on this listener", "check kafka.brokers (the SASL listener's port) or remove kafka.sasl")
		return ce, true, false

	case errors.As(err, &unknownCA):
		set("TLS: the broker's certificate is not trusted", "check kafka.tls.ca_file")
		return ce, true, false
	case errors.As(err, &hostErr):
		set("TLS: the broker's certificate is not valid for the name dialled", "check kafka.brokers or kafka.tls.server_name")
		return ce, true, false
	case errors.As(err, &invalid):
		set("TLS: the broker's certificate is invalid", "check the brokers' certificates and kafka.tls.ca_file")
		return ce, true, false
	case errors.As(err, &verifyErr):
		set("TLS: the broker's certificate could not be verified", "check kafka.tls.ca_file")
		return ce, true, false
	case remoteText != "" && containsAny(remoteText, certAlerts) && !haveCert:
		set("TLS: the broker requires a client certificate", "set kafka.tls.cert_file and key_file")
		return ce, true, false
	case remoteText != "" && containsAny(remoteText, certAlerts):
		set("TLS: the broker refused the client certificate", "check kafka.tls.cert_file and key_file: the brokers must trust the CA that signed it")
		return ce, true, false
	case remoteText != "":
		set("TLS: the broker ended the handshake", "check kafka.tls and the brokers' TLS settings")
		return ce, true, false
	case errors.As(err, &recordErr):
		set("TLS: the broker does not speak TLS", "check kafka.brokers (the TLS listener's port) or turn kafka.tls off")
		return ce, true, false
	case !tlsOn && strings.Contains(err.Error(), "tls alert record"):
		// franz-go read a TLS alert where a Kafka response was due.
		set("the broker speaks TLS and the client does not", "set kafka.tls (e.g. kafka.tls.ca_file), or check kafka.brokers")
		return ce, true, false

	case tlsOn && errors.Is(err, syscall.ECONNRESET) && strings.HasPrefix(err.Error(), "unable to dial"):
		// Reset in the handshake (the dial includes it): the listener
		// dropped a ClientHello it did not understand.
		set("TLS: the broker reset the connection during the handshake", "is it a TLS listener? check kafka.brokers and kafka.tls")
		return ce, true, true
	case errors.As(err, &firstEOF):
		msg := firstEOF.Error()
		switch {
		case tlsOn && strings.Contains(msg, "after a dial"):
			set("TLS: the broker closed the connection during the handshake", "is it a TLS listener? check kafka.brokers and kafka.tls")
			return ce, true, true
		case !saslOn && strings.Contains(msg, "SASL"):
			set("the broker closed the connection after the first request", "it may require SASL: set kafka.sasl, or check kafka.brokers")
			return ce, true, true
		}
		set("the broker closed the connection", "check kafka.brokers, kafka.tls and kafka.sasl")
		return ce, false, false

	case errors.As(err, &dnsErr):
		set("cannot resolve a broker's host", "check kafka.brokers")
	case errors.Is(err, syscall.ECONNREFUSED):
		set("cannot connect to the brokers (connection refused)", "is Kafka running there? check kafka.brokers")
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &opErr) && opErr.Timeout():
		hint := "check kafka.brokers and the network"
		if tlsOn {
			hint += ", and that the listener speaks TLS"
		}
		set(fmt.Sprintf("no broker answered within %s", PreflightTimeout), hint)
	default:
		set("cannot talk to the brokers", "check kafka.brokers, kafka.tls and kafka.sasl")
	}
	return ce, false, false
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
