package topology

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a topology, located by its path in the
// document (flows[0].strategy.type) and, when known, its line and column.
type Problem struct {
	File   string
	Line   int
	Column int
	Path   string
	Msg    string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", p.Line, p.Column)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a topology. Load returns it (as error)
// when the file is invalid.
type Error struct {
	Problems []*Problem
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems, so errors.As finds each *Problem.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Override replaces the value at Path, a YAML path such as
// "kafka.brokers", with what Set writes into the decoded topology (see
// Parse).
type Override struct {
	Path string
	Set  func(*Topology)
}

// Env looks up an environment variable; os.LookupEnv by default.
type Env func(name string) (string, bool)

// LoadFile reads, decodes, defaults and validates the topology at path.
// Values may use ${VAR} or ${VAR:-default}, read from the environment.
func LoadFile(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes, defaults and validates a topology document. file names it
// in messages. Unknown keys are errors; every problem is reported at once
// in an *Error.
//
// Each override replaces the value at its path before defaults and
// validation: what the document holds there, and any environment variable
// it reads, is not looked at (a --brokers flag makes an unset
// ${SG_BROKERS} behind kafka.brokers irrelevant).
func Parse(file string, data []byte, env Env, overrides ...Override) (*Topology, error) {
	d := &decoder{file: file, env: env, skip: map[string]bool{}}
	for _, o := range overrides {
		d.skip[o.Path] = true
	}
	t := &Topology{File: file}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &Error{Problems: []*Problem{{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}}
	}
	if len(root.Content) == 0 {
		return nil, &Error{Problems: []*Problem{{File: file, Msg: "empty document"}}}
	}
	d.decode(root.Content[0], reflect.ValueOf(t).Elem(), "")
	if len(d.problems) > 0 {
		return nil, &Error{Problems: d.problems}
	}
	for _, o := range overrides {
		o.Set(t)
	}
	t.setDefaults(d.lines)
	if err := t.validate(d.lines); err != nil {
		var te *Error
		if errors.As(err, &te) {
			for _, p := range te.Problems {
				p.File = file
			}
		}
		return nil, err
	}
	t.lines = d.lines
	return t, nil
}

type pos struct{ line, col int }

type decoder struct {
	file     string
	env      Env
	problems []*Problem
	lines    map[string]pos  // path → position, for validation messages
	skip     map[string]bool // paths that an Override replaces
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	p := &Problem{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	d.problems = append(d.problems, p)
}

func (d *decoder) mark(n *yaml.Node, path string) {
	if d.lines == nil {
		d.lines = map[string]pos{}
	}
	d.lines[path] = pos{n.Line, n.Column}
}

// scalar is implemented by types decoded from one YAML scalar.
type scalar interface {
	parseScalar(s string) error
}

var scalarType = reflect.TypeFor[scalar]()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.mark(n, path)
	if d.skip[path] {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value; defaults fill it
	}
	if reflect.PointerTo(v.Type()).Implements(scalarType) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a scalar value, have a %s", kindName(n))
			return
		}
		s, ok := d.interpolate(n, path)
		if !ok {
			return
		}
		if err := v.Addr().Interface().(scalar).parseScalar(s); err != nil {
			msg := err.Error()
			if s != n.Value {
				// Show what was written (${VAR}), never what the
				// environment held: it may be a secret.
				msg = strings.ReplaceAll(msg, strconv.Quote(s), strconv.Quote(n.Value))
			}
			d.fail(n, path, "%s", msg)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, have a %s", kindName(n))
			return
		}
		fields := map[string]int{}
		var names []string
		for i := 0; i < v.NumField(); i++ {
			tag := v.Type().Field(i).Tag.Get("yaml")
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = i
			names = append(names, tag)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			kp := join(path, key)
			if seen[key] {
				d.fail(k, kp, "duplicate key")
				continue
			}
			seen[key] = true
			idx, ok := fields[key]
			if !ok {
				d.fail(k, kp, "unknown key (known: %s)", strings.Join(names, ", "))
				continue
			}
			d.decode(val, v.Field(idx), kp)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, have a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, have a %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.fail(k, kp, "duplicate key")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, kp)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String, reflect.Int, reflect.Bool, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a scalar value, have a %s", kindName(n))
			return
		}
		s, ok := d.interpolate(n, path)
		if !ok {
			return
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(s)
		case reflect.Int:
			i, err := strconv.Atoi(s)
			if err != nil {
				d.fail(n, path, "want an integer, have %q", n.Value)
				return
			}
			v.SetInt(int64(i))
		case reflect.Bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				d.fail(n, path, "want true or false, have %q", n.Value)
				return
			}
			v.SetBool(b)
		case reflect.Float64:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				d.fail(n, path, "want a number, have %q", n.Value)
				return
			}
			v.SetFloat(f)
		}
	default:
		d.fail(n, path, "cannot decode into %s", v.Type()) // a bug in the types, not the file
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	}
	return "node"
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// interpolate replaces ${VAR} and ${VAR:-default} in a scalar. Messages name
// the variable, never its value, so secrets stay out of output.
func (d *decoder) interpolate(n *yaml.Node, path string) (string, bool) {
	if !strings.Contains(n.Value, "${") {
		return n.Value, true
	}
	ok := true
	out := envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, found := d.env(m[1]); found && (v != "" || m[2] == "") {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		d.fail(n, path, "environment variable %s is not set", m[1])
		ok = false
		return ""
	})
	return out, ok
}

// Duration is a time.Duration written as "250ms", "2s" or "1m".
type Duration struct{ D time.Duration }

func (d *Duration) parseScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 250ms or 2s, have %q", s)
	}
	d.D = v
	return nil
}

// String formats the duration as Go does.
func (d Duration) String() string { return d.D.String() }

// ByteSize is a size in bytes written as 1048576, 512KiB, 1MiB or 1GiB.
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

func (b *ByteSize) parseScalar(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return fmt.Errorf("want a size such as 1048576, 512KiB or 1MiB, have %q", s)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Quorum is a number of OK answers or the word majority.
type Quorum struct {
	N        int
	Majority bool
}

func (q *Quorum) parseScalar(s string) error {
	if s == "majority" {
		*q = Quorum{Majority: true}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want a number or majority, have %q", s)
	}
	*q = Quorum{N: n}
	return nil
}

// String formats the quorum as written.
func (q Quorum) String() string {
	if q.Majority {
		return "majority"
	}
	return strconv.Itoa(q.N)
}
