package schemas

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ErrEmptyRequestID is the error of ValidRequestID for an empty id.
var ErrEmptyRequestID = errors.New("schemas: empty request id")

// ValidRequestID reports why id cannot be a request id, or nil when it can.
// A request id is 1 to MaxRequestIDBytes bytes of valid UTF-8, without
// control characters (Unicode category Cc: C0, DEL and C1, so no CR, LF or
// tab) and without white space at either end. The id travels as the
// records' key and, from the built-in HTTP worker, as the X-Request-Id
// header: an HTTP client refuses a header value with a control character
// (every call would fail), and trims the white space at its ends (the
// provider would see another id).
func ValidRequestID(id string) error {
	if id == "" {
		return ErrEmptyRequestID
	}
	if len(id) > MaxRequestIDBytes {
		return fmt.Errorf("schemas: request id of %d bytes exceeds %d", len(id), MaxRequestIDBytes)
	}
	if !utf8.ValidString(id) {
		return errors.New("schemas: request id is not valid UTF-8")
	}
	for i, r := range id {
		if unicode.Is(unicode.Cc, r) {
			return fmt.Errorf("schemas: request id has control character %U at byte %d", r, i)
		}
	}
	first, _ := utf8.DecodeRuneInString(id)
	last, _ := utf8.DecodeLastRuneInString(id)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return errors.New("schemas: request id begins or ends with white space")
	}
	return nil
}
