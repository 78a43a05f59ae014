package pyvisor

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"text/template"
)

// SlotData is what a slots.env template sees for one worker slot.
type SlotData struct {
	// Slot is the slot's index, 0 to Workers-1, kept across restarts and recycles.
	Slot int
	// Device is Devices[Slot % len(Devices)], "" when there are no devices.
	Device string
	// Pool is the pool's name.
	Pool string
	// Workers is the pool's size when the slot was made: at Start, or by the
	// Resize that added it.
	Workers int
}

// slotFuncs are the functions a slots.env template may call besides text/template's own.
var slotFuncs = template.FuncMap{
	// add sums integers: {{add 9000 .Slot}}.
	"add": func(a, b int) int { return a + b },
}

// parseSlotTemplate parses the slots.env value of the variable name.
func parseSlotTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Funcs(slotFuncs).Parse(text)
}

// data is what slot sees in the pool named pool of workers workers.
func (c SlotsConfig) data(pool string, workers, slot int) SlotData {
	d := SlotData{Slot: slot, Pool: pool, Workers: workers}
	if len(c.Devices) > 0 {
		d.Device = c.Devices[slot%len(c.Devices)]
	}
	return d
}

// slotTemplate is one variable of slots.env, parsed.
type slotTemplate struct {
	name string
	tmpl *template.Template
}

// render runs t for d.
func (t slotTemplate) render(d SlotData) (string, error) {
	var b strings.Builder
	if err := t.tmpl.Execute(&b, d); err != nil {
		return "", err
	}
	if strings.ContainsRune(b.String(), 0) {
		return "", fmt.Errorf("template: %s: the value contains NUL", t.name)
	}
	return b.String(), nil
}

// Variables every worker process gets, naming its slot and its pool (docs/gpus.md).
const (
	slotVar = "PYVISOR_SLOT"
	poolVar = "PYVISOR_POOL"
)

// slotEnv returns the function that makes the environment of each slot of pool pc,
// beyond its Env: its slots.env templates run for the slot, then PYVISOR_SLOT and
// PYVISOR_POOL, which nothing overrides. The slot's index and the pool's size go in.
// Validate has run the templates for every slot of the configured size; an error is one
// that fails for a slot that Resize added past it.
func slotEnv(pc PoolConfig) func(slot, workers int) (map[string]string, error) {
	slots, name := pc.Slots, pc.Name
	return func(slot, workers int) (map[string]string, error) {
		d := slots.data(name, workers, slot)
		env := make(map[string]string, len(slots.Env)+2)
		for k, text := range slots.Env {
			t, err := parseSlotTemplate(k, text)
			if err == nil {
				env[k], err = slotTemplate{name: k, tmpl: t}.render(d)
			}
			if err != nil {
				return nil, fmt.Errorf("slot %d: slots.env.%s: %w", slot, k, err)
			}
		}
		env[slotVar], env[poolVar] = strconv.Itoa(slot), name
		return env, nil
	}
}

// SlotEnv is the environment the runtime gives the processes of slot in pool p, on top
// of the few variables every worker inherits (bridge.WorkerEnv): Env, then slots.env run
// for the slot (.Workers is p's size), then PYVISOR_SLOT and PYVISOR_POOL. pyvisor doctor
// imports the tools modules with slot 0's.
func (p PoolConfig) SlotEnv(slot int) (map[string]string, error) {
	p = p.withDefaults()
	extra, err := slotEnv(p)(slot, p.Workers)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	env := maps.Clone(p.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, extra)
	return env, nil
}
