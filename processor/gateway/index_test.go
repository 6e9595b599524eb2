package gateway

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

var t0 = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

func TestIndexFirstAggregateWinsAndWakesWaiters(t *testing.T) {
	x := NewIndex(10, 0, time.Minute)
	k := Key{"f", "r1"}
	b, added, release := x.Await(k, t0)
	defer release()
	if b != nil {
		t.Fatalf("aggregate before any was put: %s", b)
	}
	if !x.Put(k, []byte("first"), t0) {
		t.Fatal("first put refused")
	}
	select {
	case <-added:
	default:
		t.Fatal("waiter not woken by the put")
	}
	if x.Put(k, []byte("second"), t0) {
		t.Error("second aggregate of a request accepted")
	}
	if got, _ := x.Get(k, t0); string(got) != "first" {
		t.Errorf("Get = %q, want the first aggregate", got)
	}
	if got, _, _ := x.Await(k, t0); string(got) != "first" {
		t.Errorf("Await = %q, want the first aggregate at once", got)
	}
	if _, ok := x.Get(Key{"other", "r1"}, t0); ok {
		t.Error("an aggregate of another flow with the same id was found")
	}
}

func TestIndexBounds(t *testing.T) {
	x := NewIndex(2, 0, time.Minute)
	for i, id := range []string{"a", "b", "c"} {
		x.Put(Key{"f", id}, []byte(id), t0.Add(time.Duration(i)*time.Second))
	}
	if _, ok := x.Get(Key{"f", "a"}, t0); ok {
		t.Error("oldest aggregate kept beyond the size bound")
	}
	if _, ok := x.Get(Key{"f", "c"}, t0); !ok {
		t.Error("newest aggregate dropped")
	}
	// b was put at t0+1s: gone once a minute has passed since.
	if _, ok := x.Get(Key{"f", "b"}, t0.Add(time.Minute+1500*time.Millisecond)); ok {
		t.Error("aggregate kept beyond its ttl")
	}
	if _, ok := x.Get(Key{"f", "c"}, t0.Add(time.Minute+1500*time.Millisecond)); !ok {
		t.Error("aggregate dropped before its ttl")
	}
	if n, _, b := x.Len(); n != 1 || b != 1 {
		t.Errorf("%d aggregates of %d bytes held, want 1 of 1", n, b)
	}
}

func TestIndexByteBound(t *testing.T) {
	x := NewIndex(100, 10, time.Minute)
	x.Put(Key{"f", "a"}, []byte("aaaa"), t0)
	x.Put(Key{"f", "b"}, []byte("bbbb"), t0)
	x.Put(Key{"f", "c"}, []byte("cccc"), t0)
	if _, ok := x.Get(Key{"f", "a"}, t0); ok {
		t.Error("oldest aggregate kept beyond the byte bound")
	}
	if n, _, b := x.Len(); n != 2 || b != 8 {
		t.Errorf("%d aggregates of %d bytes, want 2 of 8", n, b)
	}
	x.Put(Key{"f", "big"}, make([]byte, 11), t0)
	if n, _, b := x.Len(); n != 0 || b != 0 {
		t.Errorf("an aggregate over the whole bound left %d aggregates of %d bytes, want none", n, b)
	}
}

func TestIndexReleaseForgetsWaiter(t *testing.T) {
	x := NewIndex(10, 0, time.Minute)
	k := Key{"f", "r"}
	_, _, r1 := x.Await(k, t0)
	_, added, r2 := x.Await(k, t0)
	r1()
	r1() // twice is once
	if len(x.waiters) != 1 {
		t.Fatalf("%d waiters, want 1 still waiting", len(x.waiters))
	}
	r2()
	if len(x.waiters) != 0 {
		t.Fatalf("%d waiters after every release", len(x.waiters))
	}
	x.Put(k, []byte("a"), t0)
	select {
	case <-added:
		t.Error("a released waiter's channel was closed by a later put")
	default:
	}
}

func TestIndexAcceptOnce(t *testing.T) {
	x := NewIndex(10, 0, time.Minute)
	k := Key{"f", "r"}
	d := [32]byte{1}
	s, fresh := x.Accept(k, d, t0)
	if !fresh {
		t.Fatal("first accept not fresh")
	}
	again, fresh := x.Accept(k, d, t0)
	if fresh || again != s {
		t.Fatal("a request being sent was accepted for sending again")
	}
	x.Settle(k, s, nil)
	<-s.Done()
	if _, fresh := x.Accept(k, d, t0); fresh {
		t.Error("a sent request was accepted for sending again")
	}
	if _, ok := x.Sent(k, t0); !ok {
		t.Error("sent request not found")
	}
	if _, ok := x.Sent(k, t0.Add(2*time.Minute)); ok {
		t.Error("sent request kept beyond its ttl")
	}
}

func TestIndexFailedSendIsForgotten(t *testing.T) {
	x := NewIndex(10, 0, time.Minute)
	k := Key{"f", "r"}
	s, _ := x.Accept(k, [32]byte{}, t0)
	x.Settle(k, s, errors.New("broker down"))
	if s.Err() == nil {
		t.Fatal("settled error lost")
	}
	if _, ok := x.Sent(k, t0); ok {
		t.Error("failed send still counted as sent")
	}
	if _, fresh := x.Accept(k, [32]byte{}, t0); !fresh {
		t.Error("retry of a failed send not sent again")
	}
}

func TestPreferWait(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want time.Duration
		ok   bool
	}{
		{nil, 0, false},
		{[]string{"wait=5"}, 5 * time.Second, true},
		{[]string{"respond-async, wait=10"}, 10 * time.Second, true},
		{[]string{"return=minimal", "Wait = 3"}, 3 * time.Second, true},
		{[]string{`wait="2"`}, 2 * time.Second, true},
		{[]string{"wait=soon"}, 0, false},
		{[]string{"wait=-1"}, 0, false},
		{[]string{"waiting=1"}, 0, false},
	} {
		h := http.Header{}
		for _, v := range tc.in {
			h.Add("Prefer", v)
		}
		got, ok := preferWait(h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Prefer %q: %s %v, want %s %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestQueryWait(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "7": 7 * time.Second, "250ms": 250 * time.Millisecond} {
		if got, err := queryWait(in); err != nil || got != want {
			t.Errorf("%q: %s %v, want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"-1s", "soon", "1.5"} {
		if _, err := queryWait(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRequestID(t *testing.T) {
	a, err := requestID("")
	b, _ := requestID("")
	if err != nil || a == b || len(a) != 32 {
		t.Errorf("random ids %q %q %v", a, b, err)
	}
	if id, err := requestID(`"order-7"`); err != nil || id != "order-7" {
		t.Errorf("quoted key: %q %v", id, err)
	}
	if _, err := requestID(" padded"); err == nil {
		t.Error("key with leading space accepted")
	}
}
