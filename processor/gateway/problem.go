package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Problem is an error response body (RFC 9457), served as
// application/problem+json.
type Problem struct {
	// Type is a URI that names the kind of problem: urn:scattergather:problem:<kind>.
	Type string `json:"type"`
	// Title is the kind of problem, for people.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail says what went wrong with this request.
	Detail string `json:"detail,omitempty"`
	// Instance is the request's path.
	Instance string `json:"instance,omitempty"`
	// RequestID is the request id, when there is one.
	RequestID string `json:"request_id,omitempty"`
}

// Kinds of problem, the last segment of Problem.Type.
const (
	ProblemUnknownFlow    = "unknown-flow"
	ProblemUnknownRequest = "unknown-request"
	ProblemNotJSON        = "not-json"
	ProblemTooLarge       = "payload-too-large"
	ProblemBadRequestID   = "bad-request-id"
	ProblemBadWait        = "bad-wait"
	ProblemKeyReused      = "idempotency-key-reused"
	ProblemUnauthorized   = "unauthorized"
	ProblemBusy           = "busy"
	ProblemUnavailable    = "broker-unavailable"
)

var problemTitles = map[string]string{
	ProblemUnknownFlow:    "unknown flow",
	ProblemUnknownRequest: "unknown request",
	ProblemNotJSON:        "body is not JSON",
	ProblemTooLarge:       "payload too large",
	ProblemBadRequestID:   "bad request id",
	ProblemBadWait:        "bad wait",
	ProblemKeyReused:      "idempotency key reused with another body",
	ProblemUnauthorized:   "unauthorized",
	ProblemBusy:           "too many waiting requests",
	ProblemUnavailable:    "broker unavailable",
}

// problemType is the URI of a kind of problem.
func problemType(kind string) string { return "urn:scattergather:problem:" + kind }

func writeProblem(w http.ResponseWriter, r *http.Request, status int, kind, id, detail string) {
	p := Problem{Type: problemType(kind), Title: problemTitles[kind], Status: status,
		Detail: detail, Instance: r.URL.Path, RequestID: id}
	b, _ := json.Marshal(p) // plain strings and an int
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// preferWait returns the wait preference (RFC 7240: wait=<seconds>) of
// the Prefer headers, if one is there and well formed; a malformed one is
// ignored, as the RFC asks.
func preferWait(h http.Header) (time.Duration, bool) {
	for _, v := range h.Values("Prefer") {
		for _, pref := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' }) {
			name, val, _ := strings.Cut(strings.SplitN(pref, ";", 2)[0], "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(val), `"`), 10, 32)
			if err != nil {
				continue
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// queryWait parses the wait query parameter: whole seconds ("5") or a Go
// duration ("500ms", "2s"), not negative.
func queryWait(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errBadWait
	}
	return d, nil
}
