// Package payload reads JSON payloads by field path, for the scatter's
// items fan-out and the gather's consolidations.
//
// A path is dot-separated: "price", "offer.price", "legs.0.from". A segment
// selects a key of an object, or an index of an array when it is a decimal
// number. Numbers are kept as json.Number, so they compare and print
// exactly as written.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Errors returned by Parse and Lookup.
var (
	// ErrNotJSON: the payload is not one valid JSON value.
	ErrNotJSON = errors.New("payload: not valid JSON")
	// ErrMissing: the path does not exist in the payload.
	ErrMissing = errors.New("payload: field missing")
	// ErrType: the value at the path has another type than required.
	ErrType = errors.New("payload: field of the wrong type")
)

// Parse decodes one JSON value with numbers as json.Number. The result is
// a tree of map[string]any, []any, string, json.Number, bool and nil that
// shares no memory with b.
func Parse(b []byte) (any, error) {
	if v, ok := parseFast(b); ok {
		return v, nil
	}
	return parseDecoder(b)
}

// parseDecoder is Parse by encoding/json, for every payload, with its
// errors.
func parseDecoder(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotJSON, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the value", ErrNotJSON)
	}
	return v, nil
}

// Lookup returns the value at path in doc.
func Lookup(doc any, path string) (any, error) {
	cur := doc
	for seg := range strings.SplitSeq(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, fmt.Errorf("%w: %s", ErrMissing, path)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%w: %s", ErrMissing, path)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%w: %s", ErrMissing, path)
		}
	}
	return cur, nil
}

// Number returns the number at path in doc.
func Number(doc any, path string) (json.Number, float64, error) {
	v, err := Lookup(doc, path)
	if err != nil {
		return "", 0, err
	}
	n, ok := v.(json.Number)
	if !ok {
		return "", 0, fmt.Errorf("%w: %s is %s, want a number", ErrType, path, TypeName(v))
	}
	f, err := n.Float64()
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s: %w", ErrType, path, err)
	}
	return n, f, nil
}

// Array returns the array at path in doc.
func Array(doc any, path string) ([]any, error) {
	v, err := Lookup(doc, path)
	if err != nil {
		return nil, err
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s is %s, want an array", ErrType, path, TypeName(v))
	}
	return a, nil
}

// TypeName names the JSON type of a parsed value.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// Marshal encodes a parsed value as compact JSON with object keys sorted,
// so equal values give equal bytes.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
