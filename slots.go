package pyvisor

import (
	"fmt"
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

// slotEnv returns the function that makes each slot's environment in pool pc from its
// slots.env templates (nil when there are none): the slot's index and the pool's size
// in, the variables out. Validate has run the templates for every slot of the configured
// size; an error is one that fails for a slot that Resize added past it.
func slotEnv(pc PoolConfig) func(slot, workers int) (map[string]string, error) {
	if len(pc.Slots.Env) == 0 {
		return nil
	}
	slots, name := pc.Slots, pc.Name
	return func(slot, workers int) (map[string]string, error) {
		d := slots.data(name, workers, slot)
		env := make(map[string]string, len(slots.Env))
		for k, text := range slots.Env {
			t, err := parseSlotTemplate(k, text)
			if err == nil {
				env[k], err = slotTemplate{name: k, tmpl: t}.render(d)
			}
			if err != nil {
				return nil, fmt.Errorf("slot %d: slots.env.%s: %w", slot, k, err)
			}
		}
		return env, nil
	}
}
