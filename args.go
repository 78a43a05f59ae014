package pyvisor

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
)

// hiddenFields refuses a struct of arguments that has fields but encodes to {}: all of
// them unexported (or tagged "-"), so the tool would get no arguments and only say one
// is missing.
func hiddenFields(args any, encoded []byte) error {
	if !bytes.Equal(bytes.TrimSpace(encoded), []byte("{}")) {
		return nil
	}
	t := reflect.TypeOf(args)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || t.NumField() == 0 {
		return nil
	}
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		names = append(names, t.Field(i).Name)
	}
	return fmt.Errorf("arguments of type %s encode to {}: its fields (%s) are unexported or tagged \"-\"; export them, with json tags naming the tool's parameters (Add int `json:\"a\"`)",
		t, strings.Join(names, ", "))
}
