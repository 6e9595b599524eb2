package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scattergather/scattergather/internal/processortest"
)

// gatewayPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, both issued by the CA, to dir; it returns the CA pool and
// the client's certificate.
func gatewayPKI(t *testing.T, dir string) (pool *x509.CertPool, client tls.Certificate) {
	t.Helper()
	ca := processortest.NewCA(t, "gateway CA")
	srv, srvKey := ca.Server(t, "gateway")
	cl, clKey := ca.Client(t, "caller")
	processortest.WriteCert(t, dir, "ca.pem", ca.Cert)
	processortest.WriteCert(t, dir, "server.pem", srv)
	processortest.WriteKey(t, dir, "server-key.pem", srvKey)
	pool = x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool, tls.Certificate{Certificate: [][]byte{cl.Raw}, PrivateKey: clKey}
}

// run --role gateway serves HTTPS, requires a client certificate of its CA
// and the bearer token of its token file, and never logs the token.
func TestRunGatewayTLS(t *testing.T) {
	brokers := processortest.Fake(t)
	dir := t.TempDir()
	pool, clientCert := gatewayPKI(t, dir)
	const token = "tok-7f3a9c"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flow := processortest.Unique("quotes")
	topo := writeFile(t, "topology.yaml", fmt.Sprintf(`
kafka: {brokers: [%s]}
flows:
  - name: %s
    timeout: 2s
    targets: [{name: one, http: {url: "http://127.0.0.1:1/"}}]
`, brokers[0], flow))
	if r := runCmd(context.Background(), "", "topics", "create", "--topology", topo); r.code != exitOK {
		t.Fatalf("topics create: %+v", r)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan result, 1)
	go func() {
		runDone <- runCmd(ctx, "", "run", "--topology", topo, "--role", "gateway", "--http-addr", "", "--log-level", "debug",
			"--gateway-addr", addr, "--gateway-tls-cert", filepath.Join(dir, "server.pem"), "--gateway-tls-key", filepath.Join(dir, "server-key.pem"),
			"--gateway-client-ca", filepath.Join(dir, "ca.pem"), "--gateway-token-file", tokenFile)
	}()
	url := "https://" + addr + "/v1/flows/" + flow + "/requests"
	call := func(cert []tls.Certificate, auth string) (int, string, error) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: cert}}}
		req, err := http.NewRequest("POST", url, strings.NewReader(`{"from":"AMS"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Prefer", "wait=0")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	certs := []tls.Certificate{clientCert}
	processortest.Eventually(t, time.Minute, "the gateway accepting a request", func() bool {
		code, _, err := call(certs, "Bearer "+token)
		return err == nil && code == http.StatusAccepted
	})
	if code, body, err := call(certs, "Bearer wrong"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d %s %v, want 401", code, body, err)
	}
	if code, _, err := call(nil, "Bearer "+token); err == nil {
		t.Errorf("no client certificate: answered %d, want a failed handshake", code)
	}
	cancel()
	r := <-runDone
	if r.code != exitOK {
		t.Errorf("run: %+v", r)
	}
	if strings.Contains(r.stderr, token) {
		t.Errorf("the token reached the log:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "serving flow requests") {
		t.Errorf("no line saying where the gateway serves:\n%s", r.stderr)
	}
}
