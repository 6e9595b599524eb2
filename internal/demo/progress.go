package demo

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress prints a live line: rewritten in place on a terminal, a line a
// second otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(sent, total, aggregated int, open int64) {
	every := time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(p.last) < every && sent < total {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("sent %d/%d  aggregated %d  open in gather %d", sent, total, aggregated, open)
	if p.tty {
		fmt.Fprintf(p.w, "\r%-70s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.shown = true
}

func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}
