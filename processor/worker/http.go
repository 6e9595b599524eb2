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
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/scattergather/scattergather/processor/topology"
	"github.com/scattergather/scattergather/schemas"
)

// HTTPCaller is the built-in handler that calls a provider over HTTP: it
// sends the task payload (POST by default) with the task id as the
// Idempotency-Key header and the request id as X-Request-Id, and answers
// with the response body. A transport error, a timeout or a non-2xx status
// is an error; 4xx other than 408 and 429 are permanent (not retried).
//
// Redirects are not followed unless the target says follow_redirects:
// same_host: a 3xx answer is a permanent error naming where the provider
// pointed, so the configured headers (API keys), the method and the body
// never go to another host or over plain http. Errors never show the
// query or the user information of a URL.
//
// A target with http.endpoints calls them in turn: each try of a retry
// goes to the next one, and a hedge's backup call to the one after its
// primary's (see Endpoint).
type HTTPCaller struct {
	cfg    *topology.HTTPTarget
	urls   []string
	client *http.Client
}

// maxRedirects bounds the redirects followed with follow_redirects:
// same_host, as Go's default client does.
const maxRedirects = 10

// NewHTTPCaller returns the caller of one target. A nil client gets one with
// TLS verification on (unless the target says insecure_skip_verify). The
// caller uses a copy of client whose redirect policy is the target's: the
// client's own CheckRedirect is not used.
func NewHTTPCaller(cfg *topology.HTTPTarget, client *http.Client) *HTTPCaller {
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		if cfg.InsecureSkipVerify {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for in the topology
		}
		client = &http.Client{Transport: tr}
	}
	own := *client
	own.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if cfg.FollowRedirects == topology.RedirectsSameHost && len(via) < maxRedirects && followable(req.Response, via[0].URL) {
			return nil
		}
		// Stop here: Do returns the 3xx answer, which Handle refuses.
		return http.ErrUseLastResponse
	}
	return &HTTPCaller{cfg: cfg, urls: cfg.URLs(), client: &own}
}

// followable reports whether follow_redirects: same_host follows the
// redirect resp: a 307 or 308 (which keep the method and the body) to the
// same host and port as the original request, over https.
func followable(resp *http.Response, orig *url.URL) bool {
	if resp == nil || resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
		return false
	}
	to, err := resp.Location()
	if err != nil {
		return false
	}
	return to.Scheme == "https" && orig.Scheme == "https" &&
		strings.EqualFold(to.Hostname(), orig.Hostname()) && port(to) == port(orig)
}

// port is the port of an http or https URL, explicit or implied.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// redirectError is the error of a 3xx answer: where the provider pointed
// (scheme and host only: a path or query may hold secrets) and why it was
// not followed.
func (c *HTTPCaller) redirectError(resp *http.Response, orig *url.URL) error {
	to := "no location"
	if loc, err := resp.Location(); err == nil {
		to = loc.Scheme + "://" + loc.Host
	}
	why := "redirects are not followed (point http.url or http.endpoints at the new address)"
	if c.cfg.FollowRedirects == topology.RedirectsSameHost {
		why = "follow_redirects: same_host follows only 307 and 308 to the same host over https"
		if followable(resp, orig) {
			why = fmt.Sprintf("gave up after %d redirects", maxRedirects)
		}
	}
	return Permanent(fmt.Errorf("provider redirected (%s) to %s: %s", resp.Status, to, why))
}

// Handle calls the provider once.
func (c *HTTPCaller) Handle(ctx context.Context, t *schemas.Task) ([]byte, error) {
	var body io.Reader
	if c.cfg.Method != http.MethodGet {
		body = bytes.NewReader(t.Payload)
	}
	req, err := http.NewRequestWithContext(ctx, c.cfg.Method, c.urls[Endpoint(ctx, len(c.urls))], body)
	if err != nil {
		return nil, Permanent(fmt.Errorf("worker: build request: %w", redact(err)))
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
	setTaskHeaders(ctx, req.Header, t, time.Now())
	resp, err := c.client.Do(req)
	if err != nil {
		err = redact(err)
		// The context's cause (ErrDeadline, the Timeout middleware's) has
		// no Timeout method: check the context first.
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provider timed out: %w", context.Cause(ctx))
		}
		var uerr interface{ Timeout() bool }
		if errors.As(err, &uerr) && uerr.Timeout() {
			return nil, fmt.Errorf("provider timed out: %w", err)
		}
		var nerr *net.OpError
		if errors.As(err, &nerr) {
			return nil, fmt.Errorf("provider unreachable: %s", nerr.Err)
		}
		return nil, fmt.Errorf("provider call failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return nil, c.redirectError(resp, req.URL)
	}
	limit := int64(c.cfg.MaxResponseBytes)
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read provider answer: %w", redact(err))
	}
	if int64(len(data)) > limit {
		return nil, Permanent(fmt.Errorf("provider answer exceeds max_response_bytes %d", limit))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := fmt.Errorf("provider answered %s: %s", resp.Status, snippet(data))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return nil, Permanent(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			if after, ok := retryAfter(resp.Header, time.Now()); ok {
				return nil, &RetryAfterError{Err: fmt.Errorf("%w (retry after %s)", err, after), After: after}
			}
		}
		return nil, err
	}
	return data, nil
}

// redact hides the query and the user information of the URL that a
// *url.Error in err names (Go's HTTP client quotes the whole URL, and a
// provider's API key is often in its query), and returns err.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = topology.RedactURL(ue.URL)
	}
	return err
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// HTTPHandler returns the built-in HTTP handler of a target with its
// middleware: retries with backoff, hedge if not nil (each try is hedged),
// a circuit breaker, then mw (a RateLimiter's, say: each try and each
// backup call passes through them), then a per-call timeout, as its
// topology says. onBreaker, if not nil, is told the breaker's events (see
// NewBreaker). client nil means a default client.
func HTTPHandler(cfg *topology.HTTPTarget, client *http.Client, onBreaker func(BreakerEvent), hedge *Hedge, mw ...Middleware) Handler {
	br := NewBreaker(cfg.Breaker.Threshold(), cfg.Breaker.Cooldown.D, onBreaker)
	chain := []Middleware{Retry(cfg.Retries, cfg.Backoff.D, cfg.MaxBackoff.D)}
	if hedge != nil {
		chain = append(chain, hedge.Middleware())
	}
	chain = append(append(append(chain, br.Middleware()), mw...), Timeout(cfg.Timeout.D))
	return Chain(NewHTTPCaller(cfg, client), chain...)
}

// UserAgent is the User-Agent the built-in HTTP caller sends:
// scattergather/<version of the module the binary was built from>.
var UserAgent = "scattergather/" + moduleVersion()

func moduleVersion() string {
	const module = "github.com/scattergather/scattergather"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if bi.Main.Path != module {
		v = ""
		for _, d := range bi.Deps {
			if d.Path == module {
				v = d.Version
			}
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return v
}

// setTaskHeaders sets the headers that tell a provider which task a call
// is for and how long it has (the README's provider contract):
// Idempotency-Key and X-Task-Id (the task id, unique per task and the same
// on every retry), X-Request-Id (the request's, shared by its tasks),
// X-Flow, X-Target, X-Item-Index (items fan-out only), X-Deadline (the
// task's deadline, RFC 3339 UTC), X-Timeout-Ms (milliseconds left before
// the call is cut: the task's deadline or the call's timeout, whichever
// comes first) and User-Agent.
func setTaskHeaders(ctx context.Context, h http.Header, t *schemas.Task, now time.Time) {
	h.Set("Idempotency-Key", t.TaskID)
	h.Set("X-Task-Id", t.TaskID)
	h.Set("X-Request-Id", t.RequestID)
	h.Set("X-Flow", t.Flow)
	h.Set("X-Target", t.Target)
	if t.Item >= 0 {
		h.Set("X-Item-Index", strconv.Itoa(int(t.Item)))
	}
	deadline := time.UnixMilli(t.DeadlineMs)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	h.Set("X-Deadline", time.UnixMilli(t.DeadlineMs).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	h.Set("X-Timeout-Ms", strconv.FormatInt(max(deadline.Sub(now).Milliseconds(), 0), 10))
	h.Set("User-Agent", UserAgent)
}
