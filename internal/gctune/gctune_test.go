package gctune

import (
	"testing"
	"testing/fstest"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		getenv    func(string) (string, bool)
		container int64
		want      Settings
	}{
		{"no limit", env(), 0, Settings{Percent: 100, PercentFrom: "go default, no memory limit", LimitFrom: "none"}},
		{"container", env(), 1000, Settings{Percent: 400, PercentFrom: "default", Limit: 900, LimitFrom: "container"}},
		{"GOGC set", env("GOGC", "150"), 0, Settings{Percent: 150, PercentFrom: "environment", LimitFrom: "none"}},
		{"GOGC off", env("GOGC", "off"), 1000, Settings{Percent: -1, PercentFrom: "environment", Limit: 900, LimitFrom: "container"}},
		{"GOGC empty", env("GOGC", ""), 1000, Settings{Percent: 400, PercentFrom: "default", Limit: 900, LimitFrom: "container"}},
		{"GOMEMLIMIT set", env("GOMEMLIMIT", "2GiB"), 1000, Settings{Percent: 400, PercentFrom: "default", LimitFrom: "environment"}},
	} {
		if got := Plan(tc.getenv, tc.container); got != tc.want {
			t.Errorf("%s: Plan = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestContainerLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  int64
		ok    bool
	}{
		{"none", fstest.MapFS{}, 0, false},
		{"v2 own cgroup", fstest.MapFS{
			"proc/self/cgroup":                          {Data: []byte("0::/kubepods/pod1/c1\n")},
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": {Data: []byte("536870912\n")},
			"sys/fs/cgroup/memory.max":                  {Data: []byte("max\n")},
		}, 536870912, true},
		{"v2 namespaced root", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("1073741824\n")},
		}, 1073741824, true},
		{"v2 no limit", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/user.slice\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, 0, false},
		{"v1", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("4:memory:/docker/abc\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("268435456\n")},
		}, 268435456, true},
		{"v1 own cgroup", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("5:freezer:/\n4:memory:/svc/x\n0::/\n")},
			"sys/fs/cgroup/memory/svc/x/memory.limit_in_bytes": {Data: []byte("134217728\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes":       {Data: []byte("9223372036854771712\n")},
		}, 134217728, true},
		{"v1 no limit", fstest.MapFS{
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, 0, false},
	} {
		got, ok := ContainerLimit(tc.files)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: ContainerLimit = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSettingsString(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Plan(env(), 0), "GOGC 100 (go default, no memory limit), memory limit none"},
		{Settings{Percent: 400, PercentFrom: "default", Limit: 1 << 30, LimitFrom: "environment"}, "GOGC 400 (default), memory limit 1024 MiB (environment)"},
		{Plan(env("GOGC", "off"), 2<<30), "GOGC off (environment), memory limit 1843 MiB (container)"},
		{Settings{}, "GC settings unknown"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
}
