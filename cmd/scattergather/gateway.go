package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/scattergather/scattergather/processor/gateway"
	"github.com/scattergather/scattergather/processor/kafka"
)

// envGatewayToken holds the bearer token the gateway requires, when
// --gateway-token-file is not given: never a flag, which other users of
// the host could read.
const envGatewayToken = "SG_GATEWAY_TOKEN"

// gatewayFlags are the flags of the HTTP gateway.
type gatewayFlags struct {
	addr, cert, key, clientCA, tokenFile *string
	addrGiven                            bool
}

func (f *flags) gatewayFlags() *gatewayFlags {
	return &gatewayFlags{
		addr:      f.String("gateway-addr", gateway.DefaultAddr, "address of the HTTP gateway (roles gateway and all): loopback by default (taken: an ephemeral port, for role all); empty: no gateway with role all"),
		cert:      f.String("gateway-tls-cert", "", "PEM certificate `file` of the gateway: serve HTTPS (with --gateway-tls-key)"),
		key:       f.String("gateway-tls-key", "", "PEM private key `file` of --gateway-tls-cert"),
		clientCA:  f.String("gateway-client-ca", "", "PEM `file` of the CAs whose client certificates the gateway requires (mutual TLS)"),
		tokenFile: f.String("gateway-token-file", "", "`file` holding the bearer token the gateway requires (default: $"+envGatewayToken+"; none when both are empty)"),
	}
}

// options returns the gateway's options, with its listener: the default
// address gives way to an ephemeral loopback port when it is taken, as
// --http-addr's does.
func (g *gatewayFlags) options(e *env, log *slog.Logger) ([]gateway.Option, net.Listener, error) {
	var opts []gateway.Option
	if (*g.cert == "") != (*g.key == "") {
		return nil, nil, errors.New("--gateway-tls-cert and --gateway-tls-key go together")
	}
	if *g.clientCA != "" && *g.cert == "" {
		return nil, nil, errors.New("--gateway-client-ca needs --gateway-tls-cert and --gateway-tls-key")
	}
	if *g.cert != "" {
		pair, err := tls.LoadX509KeyPair(*g.cert, *g.key)
		if err != nil {
			return nil, nil, fmt.Errorf("gateway certificate: %w", err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		if *g.clientCA != "" {
			pem, err := os.ReadFile(*g.clientCA)
			if err != nil {
				return nil, nil, fmt.Errorf("--gateway-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("--gateway-client-ca %s: no PEM certificate", *g.clientCA)
			}
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, gateway.WithTLS(cfg))
	}
	token, _ := e.getenv(envGatewayToken)
	if *g.tokenFile != "" {
		b, err := os.ReadFile(*g.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--gateway-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, nil, fmt.Errorf("--gateway-token-file %s is empty", *g.tokenFile)
		}
	}
	if token != "" {
		opts = append(opts, gateway.WithBearerToken(token))
	}
	ln, err := listenFlag("--gateway-addr", *g.addr, g.addrGiven, log)
	if err != nil {
		return nil, nil, err
	}
	return append(opts, gateway.WithListener(ln), gateway.WithLogger(log)), ln, nil
}

// kafkaOpts keeps the role options that the gateway's clients take.
func kafkaOpts(opts []kafka.RoleOpt) []kafka.Opt {
	var out []kafka.Opt
	for _, o := range opts {
		if o, ok := o.(kafka.Opt); ok {
			out = append(out, o)
		}
	}
	return out
}
