package pyvisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LoadConfig reads the configuration file at path: YAML for a .yaml or .yml
// extension, JSON for .json. Decoding is strict: an unknown key, a duplicate
// key or a value of the wrong type is an error naming the file, the line and
// the field (path:line: field: problem), matching ErrInvalidConfig; every such
// problem of the file is reported, joined with errors.Join. Durations are
// strings in time.ParseDuration's syntax ("500ms", "2s", "1m30s").
//
// The result is the file as written: apply WithEnv, then WithDefaults and
// Validate (Start does the last two).
func LoadConfig(path string) (Config, error) {
	if _, err := formatOf(path); err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return Config{}, err
	}
	// Relative paths in the file are the file's, wherever the program runs from.
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	cfg.Dir = under(filepath.Dir(abs), cfg.Dir)
	return cfg, nil
}

// ParseConfig decodes a configuration held in memory (an embedded default,
// say) as LoadConfig decodes a file; name's extension (.yaml, .yml or .json)
// selects the format, and name appears in errors.
func ParseConfig(name string, data []byte) (Config, error) {
	format, err := formatOf(name)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	if format == "json" {
		// YAML parses JSON too; check first that it is strict JSON.
		if line, err := checkJSON(data); err != nil {
			return Config{}, fmt.Errorf("%s:%d: %w: %w", name, line, ErrInvalidConfig, err)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return Config{}, nil // an empty file
	case err != nil:
		return Config{}, fmt.Errorf("%s: %w: %w", name, ErrInvalidConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w: %w", name, ErrInvalidConfig, err)
		}
		return Config{}, fmt.Errorf("%s:%d: %w: more than one document", name, extra.Line, ErrInvalidConfig)
	}
	var cfg Config
	d := &nodeDecoder{name: name}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(&cfg).Elem(), "")
	}
	if len(d.errs) > 0 {
		return Config{}, errors.Join(d.errs...)
	}
	return cfg, nil
}

func formatOf(name string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".yaml", ".yml":
		return "yaml", nil
	case ".json":
		return "json", nil
	default:
		return "", fmt.Errorf("%s: unsupported extension %q (want .yaml, .yml or .json)", name, ext)
	}
}

// checkJSON reports a JSON syntax error and its line.
func checkJSON(data []byte) (int, error) {
	var v any
	err := json.Unmarshal(data, &v)
	if err == nil {
		return 0, nil
	}
	offset := len(data)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		offset = min(int(syn.Offset), len(data))
	}
	return 1 + bytes.Count(data[:offset], []byte("\n")), err
}

var durationType = reflect.TypeFor[time.Duration]()

// nodeDecoder decodes a YAML node tree into the configuration structs by
// their yaml tags, collecting every problem with its line and field path.
type nodeDecoder struct {
	name string
	errs []error
}

func (d *nodeDecoder) fail(n *yaml.Node, field, problem string, cause error) {
	if field == "" {
		field = "(top level)"
	}
	d.errs = append(d.errs, fmt.Errorf("%s:%d: %w", d.name, n.Line,
		&FieldError{Field: field, Problem: problem, Err: cause}))
}

func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // null or nothing: leave the zero value (the default)
	}
	t := v.Type()
	switch {
	case t == durationType:
		if !d.scalar(n, path, "a duration string such as \"2s\"") {
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.fail(n, path, fmt.Sprintf("want a duration such as \"2s\", got %q", n.Value), nil)
			return
		}
		v.SetInt(int64(dur))
	case t.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got "+describe(n), nil)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got "+describe(n), nil)
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			field := keyPath(path, k.Value)
			if seen[k.Value] {
				d.fail(k, field, "duplicate key", nil)
				continue
			}
			seen[k.Value] = true
			elem := reflect.New(t.Elem()).Elem()
			d.decode(val, elem, field)
			m.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
		v.Set(m)
	case t.Kind() == reflect.String:
		// Any scalar is text: `DEBUG: 1` in env is "1".
		if d.scalar(n, path, "a string") {
			v.SetString(n.Value)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if d.scalarAs(n, path, "!!bool", "true or false", &b) {
			v.SetBool(b)
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		var i int64
		if d.scalarAs(n, path, "!!int", "an integer", &i) {
			if v.OverflowInt(i) {
				d.fail(n, path, fmt.Sprintf("%s is out of range", n.Value), nil)
				return
			}
			v.SetInt(i)
		}
	case t.Kind() == reflect.Float64:
		var f float64
		if n.Tag == "!!int" || n.Tag == "!!float" {
			if d.scalarAs(n, path, n.Tag, "a number", &f) {
				v.SetFloat(f)
			}
		} else {
			d.fail(n, path, "want a number, got "+describe(n), nil)
		}
	default:
		panic("pyvisor: config field of unsupported type " + t.String())
	}
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got "+describe(n), nil)
		return
	}
	t := v.Type()
	var known []string
	index := map[string]int{}
	for i := range t.NumField() {
		if key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); key != "" && key != "-" {
			known = append(known, key)
			index[key] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		fi, ok := index[k.Value]
		switch {
		case !ok:
			d.fail(k, field, "unknown field (known: "+strings.Join(known, ", ")+")", nil)
		case seen[k.Value]:
			d.fail(k, field, "duplicate key", nil)
		default:
			seen[k.Value] = true
			d.decode(val, v.Field(fi), field)
		}
	}
}

// scalar reports whether n is a scalar, recording an error if not.
func (d *nodeDecoder) scalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want "+want+", got "+describe(n), nil)
		return false
	}
	return true
}

// scalarAs decodes the scalar n of the given tag into out.
func (d *nodeDecoder) scalarAs(n *yaml.Node, path, tag, want string, out any) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != tag {
		d.fail(n, path, "want "+want+", got "+describe(n), nil)
		return false
	}
	if err := n.Decode(out); err != nil {
		d.fail(n, path, fmt.Sprintf("want %s, got %s", want, describe(n)), err)
		return false
	}
	return true
}

// describe names what a node holds, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kinds := map[string]string{"!!str": "string", "!!int": "integer", "!!float": "number", "!!bool": "boolean"}
		if k, ok := kinds[n.Tag]; ok {
			return k + " " + strconv.Quote(n.Value)
		}
		return strconv.Quote(n.Value)
	default:
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
	}
}
