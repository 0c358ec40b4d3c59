package usersync

import "testing"

func TestSeenSetForgetsTheOldestFirst(t *testing.T) {
	s := newSeenSet(2)
	s.add("a")
	s.add("b")
	s.add("a") // already there: no new slot
	if !s.has("a") || !s.has("b") {
		t.Fatal("lost an ID before the set was full")
	}
	s.add("c")
	if s.has("a") || !s.has("b") || !s.has("c") {
		t.Fatalf("after a third ID: a=%v b=%v c=%v, want a forgotten", s.has("a"), s.has("b"), s.has("c"))
	}
}
