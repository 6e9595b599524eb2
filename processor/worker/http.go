package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// HTTPCaller is the built-in handler that calls a provider over HTTP: it
// sends the task payload (POST by default) with the task id as the
// Idempotency-Key header and the request id as X-Request-Id, and answers
// with the response body. A transport error, a timeout or a non-2xx status
// is an error; 4xx other than 408 and 429 are permanent (not retried).
type HTTPCaller struct {
	cfg    *topology.HTTPTarget
	client *http.Client
}

// NewHTTPCaller returns the caller of one target. A nil client gets one with
// TLS verification on (unless the target says insecure_skip_verify).
func NewHTTPCaller(cfg *topology.HTTPTarget, client *http.Client) *HTTPCaller {
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		if cfg.InsecureSkipVerify {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for in the topology
		}
		client = &http.Client{Transport: tr}
	}
	return &HTTPCaller{cfg: cfg, client: client}
}

// Handle calls the provider once.
func (c *HTTPCaller) Handle(ctx context.Context, t *schemas.Task) ([]byte, error) {
	var body io.Reader
	if c.cfg.Method != http.MethodGet {
		body = bytes.NewReader(t.Payload)
	}
	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, c.cfg.URL, body)
	if err != nil {
		return nil, Permanent(fmt.Errorf("worker: build request: %w", err))
	}
	for k, v := range c.cfg.Headers {
		req.Header.Set(k, v)
	}
	if body != nil {
		ct := t.ContentType
		if ct == "" {
			ct = schemas.ContentTypeJSON
		}
		req.Header.Set("Content-Type", ct)
	}
	// Set last: configured headers cannot replace the task's identity.
	req.Header.Set("Idempotency-Key", t.TaskID)
	req.Header.Set("X-Request-Id", t.RequestID)
	resp, err := c.client.Do(req)
	if err != nil {
		// The context's cause (ErrDeadline, the Timeout middleware's) has
		// no Timeout method: check the context too.
		var uerr interface{ Timeout() bool }
		if ctx.Err() != nil || errors.As(err, &uerr) && uerr.Timeout() {
			return nil, fmt.Errorf("provider timed out: %w", context.Cause(ctx))
		}
		var nerr *net.OpError
		if errors.As(err, &nerr) {
			return nil, fmt.Errorf("provider unreachable: %s", nerr.Err)
		}
		return nil, fmt.Errorf("provider call failed: %w", err)
	}
	defer resp.Body.Close()
	limit := int64(c.cfg.MaxResponseBytes)
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read provider answer: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, Permanent(fmt.Errorf("provider answer exceeds max_response_bytes %d", limit))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := fmt.Errorf("provider answered %s: %s", resp.Status, snippet(data))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return nil, Permanent(err)
		}
		return nil, err
	}
	return data, nil
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// HTTPHandler returns the built-in HTTP handler of a target with its
// middleware: a circuit breaker, retries with backoff and a per-call
// timeout, as its topology says. onBreaker, if not nil, is told the
// breaker's events (see NewBreaker). client nil means a default client.
func HTTPHandler(cfg *topology.HTTPTarget, client *http.Client, onBreaker func(BreakerEvent)) Handler {
	br := NewBreaker(cfg.Breaker.Threshold(), cfg.Breaker.Cooldown.D, onBreaker)
	return Chain(NewHTTPCaller(cfg, client),
		Retry(cfg.Retries, cfg.Backoff.D, cfg.MaxBackoff.D),
		br.Middleware(),
		Timeout(cfg.Timeout.D),
	)
}
