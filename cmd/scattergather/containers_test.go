package main

import (
	"bufio"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeFile checks docker-compose.yml where no Docker engine runs:
// it parses, every service has an image or a build, dependencies name
// services, files mounted from the repository exist, and every
// scattergather command in it parses with this binary's flags.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image      string         `yaml:"image"`
			Build      any            `yaml:"build"`
			Command    []string       `yaml:"command"`
			Entrypoint []string       `yaml:"entrypoint"`
			DependsOn  map[string]any `yaml:"depends_on"`
			Volumes    []string       `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, want := range []string{"kafka", "topics", "scatter", "worker-1", "worker-2", "gather", "providers"} {
		if _, ok := doc.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	for name, s := range doc.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		for dep := range s.DependsOn {
			if _, ok := doc.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "./") {
				if _, err := os.Stat("../../" + src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
		if s.Image != "scattergather:local" {
			continue
		}
		args := s.Command
		if len(s.Entrypoint) > 0 {
			args = append(slices.Clone(s.Entrypoint[1:]), s.Command...)
		}
		if len(args) == 0 {
			continue // the image's default command
		}
		// run serves its probes and metrics on loopback unless told:
		// unreachable from other containers.
		if args[0] == "run" && !slices.Contains(args, "--http-addr") {
			t.Errorf("service %s runs without --http-addr: its /healthz and /metrics are loopback only", name)
		}
		// Flags must parse: --help after them stops before any work.
		withHelp := append(slices.Clone(args), "--help")
		if args[0] == "send" {
			withHelp = append(slices.Clone(args[:len(args)-1]), "--help") // the payload comes last
		}
		if r := runCmd(context.Background(), "", withHelp...); r.code != exitOK {
			t.Errorf("service %s: %q does not parse (exit %d): %s", name, strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestDockerfile checks the Dockerfile's shape: a multi-stage build of a
// static binary, a non-root user, paths that exist, and an operations
// server reachable from outside the container.
func TestDockerfile(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms int
	var user, build, cmd string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms++
		case "USER":
			user = fields[1]
		case "CMD":
			cmd = line
		case "RUN":
			if strings.Contains(line, "go build") {
				build = line
			}
		case "COPY":
			if !strings.Contains(line, "--from=") && fields[1] != "." {
				if _, err := os.Stat("../../" + fields[1]); err != nil {
					t.Errorf("COPY source %s: %v", fields[1], err)
				}
			}
		}
	}
	if froms < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", froms)
	}
	if user == "" || strings.HasPrefix(user, "root") || user == "0" {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if strings.Contains(cmd, `"run"`) && !strings.Contains(cmd, `"--http-addr", "0.0.0.0:`) {
		t.Errorf("CMD %q: want --http-addr 0.0.0.0:PORT, or probes and Prometheus cannot reach the container", cmd)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/scattergather") {
		t.Errorf("build line %q: want a static build of ./cmd/scattergather", build)
	}
}
