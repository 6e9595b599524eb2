package processortest

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// EnvRegistryURL names the Confluent API base of a running schema registry,
// e.g. http://127.0.0.1:8081/apis/ccompat/v6 (scripts/registry.sh start
// prints it as REGISTRY_URL).
const EnvRegistryURL = "SG_REGISTRY_URL"

// Registry returns the Confluent API base of a real schema registry for an
// integration test: SG_REGISTRY_URL, else one of the test's own that
// scripts/registry.sh starts on a free port with a temporary data dir and
// stops when the test ends (test packages run in parallel, so they do not
// share one they did not start). When the script cannot run the test skips,
// or fails with SG_REQUIRE_INTEGRATION set.
func Registry(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvRegistryURL); u != "" {
		return u
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("processortest: cannot locate scripts/registry.sh")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "registry.sh")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("processortest: a free port for the registry: %v", err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	env := append(os.Environ(), "SG_REGISTRY_PORT="+port, "SG_REGISTRY_DIR="+filepath.Join(t.TempDir(), "registry"))
	run := func(action string) (string, error) {
		cmd := exec.Command("bash", script, action)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", errors.New(strings.TrimSpace(lastLines(stderr.String(), 20)) + ": " + err.Error())
		}
		return string(out), nil
	}
	out, err := run("start")
	if err != nil {
		if os.Getenv(EnvRequire) != "" {
			t.Fatalf("integration test needs a real schema registry and %s is set: scripts/registry.sh start: %v", EnvRequire, err)
		}
		t.Skipf("integration test: no schema registry (scripts/registry.sh start: %v); start one and set %s", err, EnvRegistryURL)
	}
	t.Cleanup(func() {
		if _, err := run("stop"); err != nil {
			t.Errorf("scripts/registry.sh stop: %v", err)
		}
	})
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "REGISTRY_URL="); ok {
			return u
		}
	}
	t.Fatalf("scripts/registry.sh start printed no REGISTRY_URL:\n%s", out)
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
