package schemas_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/schemas"
)

// The client sends basic authentication and keeps the password out of its
// errors. (Against the real registry see TestIntegrationSchemaRegistry; the
// one that scripts/registry.sh runs has no authentication.)
func TestRegistryBasicAuth(t *testing.T) {
	const user, password = "svc", "s3cret-pw"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error_code":40101,"message":"unauthorized"}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error_code":40403,"message":"Schema not found"}`))
	}))
	defer srv.Close()
	ctx := context.Background()

	reg, err := schemas.NewRegistry(schemas.RegistryConfig{URL: srv.URL + "/", Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.SchemaByID(ctx, 7)
	if !errors.Is(err, schemas.ErrSchemaNotFound) {
		t.Fatalf("with credentials: want ErrSchemaNotFound, have %v", err)
	}

	wrong, err := schemas.NewRegistry(schemas.RegistryConfig{URL: srv.URL, Username: user, Password: "wrong-" + password})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.Register(ctx, "t-value", `"long"`)
	var re *schemas.RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || re.Code != 40101 {
		t.Fatalf("wrong password: want a 401 RegistryError, have %v", err)
	}
	if errors.Is(err, schemas.ErrSchemaNotFound) || strings.Contains(err.Error(), password) {
		t.Fatalf("wrong password: error %q", err)
	}

	if _, err := schemas.NewRegistry(schemas.RegistryConfig{URL: "http://svc:" + password + "@127.0.0.1:1"}); err == nil || strings.Contains(err.Error(), password) {
		t.Fatalf("URL with credentials: want an error without the password, have %v", err)
	}
}

// An unreachable registry makes a decode fail with ErrRegistryUnavailable,
// which is not remembered: the next decode asks again.
func TestRegistryUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	reg, err := schemas.NewRegistry(schemas.RegistryConfig{URL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{src: reg}
	c := schemas.NewCodec()
	c.SetSchemaSource(src, 0)
	for i := 1; i <= 2; i++ {
		_, err := c.Decode(registryFrame(42, []byte{0}))
		var de *schemas.DecodeError
		if !errors.Is(err, schemas.ErrRegistryUnavailable) || !errors.As(err, &de) || de.SchemaID != 42 {
			t.Fatalf("want ErrRegistryUnavailable for id 42, have %v", err)
		}
		if n := src.calls.Load(); n != int64(i) {
			t.Fatalf("after %d decodes the registry was asked %d times", i, n)
		}
	}
	// Without a registry, the 0x00 framing is not read at all.
	if _, err := schemas.NewCodec().Decode(registryFrame(42, []byte{0})); !errors.Is(err, schemas.ErrNotSingleObject) {
		t.Fatalf("codec without a registry: want ErrNotSingleObject, have %v", err)
	}
}
