package supervision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

func TestSpecValidateNamesTheField(t *testing.T) {
	ok := Child{ID: "a", Producer: func() actor.Actor { return nil }}
	cases := map[string]Spec{
		"MaxRestarts":  {MaxRestarts: -1},
		"Backoff.Base": {Backoff: &Backoff{}},
		"duplicate ID": {Children: []Child{ok, ok}},
		"Producer":     {Children: []Child{{ID: "b"}}},
		"ID is empty":  {Children: []Child{{Producer: ok.Producer}}},
		"timeout":      {Children: []Child{{ID: "c", Producer: ok.Producer, Shutdown: Timeout(0)}}},
	}
	for field, spec := range cases {
		err := spec.Validate()
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Validate() = %v", field, err)
		}
	}
	if err := (Spec{Children: []Child{ok}}).Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}

func TestSpecDefaultsAreElixirs(t *testing.T) {
	s := Spec{}.withDefaults()
	if s.MaxRestarts != 3 || s.Within != 5*time.Second {
		t.Errorf("defaults = %d in %v", s.MaxRestarts, s.Within)
	}
	s = Spec{MaxRestarts: 0, Within: time.Second}.withDefaults()
	if s.MaxRestarts != 0 {
		t.Errorf("MaxRestarts 0 with a Within must forbid restarts, got %d", s.MaxRestarts)
	}
}

func TestShutdownDeadlines(t *testing.T) {
	for _, c := range []struct {
		s    Shutdown
		d    time.Duration
		ok   bool
		name string
	}{
		{Shutdown{}, DefaultShutdownTimeout, true, "5s"},
		{Timeout(time.Second), time.Second, true, "1s"},
		{BrutalKill(), 0, false, "brutal_kill"},
		{Infinity(), 0, false, "infinity"},
	} {
		d, ok := c.s.Deadline()
		if d != c.d || ok != c.ok || c.s.String() != c.name {
			t.Errorf("%v: Deadline() = %v, %v", c.s, d, ok)
		}
	}
}

func TestWindowCountsRestartsStrictlyWithin(t *testing.T) {
	t0 := time.Unix(0, 0)
	w := window{max: 2, within: time.Second}
	if w.add(t0) || w.add(t0.Add(500*time.Millisecond)) {
		t.Fatal("2 restarts within 1s exceed max 2")
	}
	if !w.add(t0.Add(999 * time.Millisecond)) {
		t.Fatal("a third restart within 1s must exceed max 2")
	}
	w = window{max: 2, within: time.Second}
	w.add(t0)
	w.add(t0.Add(500 * time.Millisecond))
	if w.add(t0.Add(time.Second)) {
		t.Fatal("a restart exactly Within old no longer counts")
	}
}
