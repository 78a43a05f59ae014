package pyvisor_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/pyvisor/pyvisor"
)

func TestSlotEnv(t *testing.T) {
	p := pyvisor.PoolConfig{
		Name:  "infer",
		Tools: []string{"m"}, // Workers 0: the default, 2
		Env:   map[string]string{"LANG": "C.UTF-8", "PORT": "from the pool's env"},
		Slots: pyvisor.SlotsConfig{Devices: []string{"0", "1"}, Env: map[string]string{
			"CUDA_VISIBLE_DEVICES": "{{.Device}}",
			"PORT":                 "{{add 9000 .Slot}}",
			"RUN":                  "{{.Pool}}-{{.Slot}}-of-{{.Workers}}",
		}},
	}
	for slot, want := range []map[string]string{
		{"LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "0", "PORT": "9000", "RUN": "infer-0-of-2", "PYVISOR_SLOT": "0", "PYVISOR_POOL": "infer"},
		{"LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "1", "PORT": "9001", "RUN": "infer-1-of-2", "PYVISOR_SLOT": "1", "PYVISOR_POOL": "infer"},
		{"LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "0", "PORT": "9002", "RUN": "infer-2-of-2", "PYVISOR_SLOT": "2", "PYVISOR_POOL": "infer"},
	} {
		got, err := p.SlotEnv(slot)
		if err != nil {
			t.Fatalf("SlotEnv(%d): %v", slot, err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("SlotEnv(%d):\n got %v\nwant %v", slot, got, want)
		}
	}
	if p.Env["PORT"] != "from the pool's env" {
		t.Errorf("SlotEnv changed the pool's Env: %v", p.Env)
	}
}

func TestSlotEnvWithoutSlots(t *testing.T) {
	got, err := pyvisor.PoolConfig{Name: "default"}.SlotEnv(1)
	want := map[string]string{"PYVISOR_SLOT": "1", "PYVISOR_POOL": "default"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("SlotEnv(1) = %v, %v; want %v", got, err, want)
	}
}

func TestSlotEnvNamesTheSlotAndVariableItFailsFor(t *testing.T) {
	p := pyvisor.PoolConfig{Name: "infer", Slots: pyvisor.SlotsConfig{Env: map[string]string{
		"SHARD": "{{if ge .Slot 2}}{{index .Pool 99}}{{end}}",
	}}}
	if _, err := p.SlotEnv(1); err != nil {
		t.Fatalf("SlotEnv(1): %v", err)
	}
	_, err := p.SlotEnv(2)
	if err == nil || !strings.HasPrefix(err.Error(), "pool infer: slot 2: slots.env.SHARD: template: SHARD:") {
		t.Errorf("SlotEnv(2): %v, want an error naming the pool, the slot and the variable", err)
	}
}

// Four workers over two GPUs, two on each, each with a port of its own: what each slot's
// processes get.
func ExamplePoolConfig_SlotEnv() {
	p := pyvisor.PoolConfig{
		Name:    "infer",
		Tools:   []string{"myproject.infer"},
		Workers: 4,
		Slots: pyvisor.SlotsConfig{
			Devices: []string{"0", "1"},
			Env:     map[string]string{"CUDA_VISIBLE_DEVICES": "{{.Device}}", "PORT": "{{add 9000 .Slot}}"},
		},
	}
	for slot := range p.Workers {
		env, err := p.SlotEnv(slot)
		if err != nil {
			panic(err)
		}
		fmt.Println(env["PYVISOR_SLOT"], env["CUDA_VISIBLE_DEVICES"], env["PORT"])
	}
	// Output:
	// 0 0 9000
	// 1 1 9001
	// 2 0 9002
	// 3 1 9003
}
