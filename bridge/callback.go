package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pyvisor/pyvisor/messages/workerv1"
)

// CallbackFunc is a Go function that a worker's tools call by name (ctx.call_go in
// Python), over the worker's channel, while one of their calls runs.
//
// args is the JSON object of the Python keyword arguments ({} without any). The result
// is JSON-encoded for Python (a json.RawMessage is sent as it is). ctx is the tool call's:
//   - its correlation id (telemetry.CorrelationID) and caller's values;
//   - a span whose parent is the Python call_go CLIENT span (the tool call's span when
//     the worker traces nothing);
//   - a deadline no later than the tool call's;
//   - a logger with the call's correlation_id, trace_id and span_id (zerolog.Ctx);
//   - cancelled as soon as the Python caller goes: the tool call is cancelled or over,
//     or the call_go is cancelled.
//
// Errors reach Python as pyvisor_worker.GoError with a kind: an error wrapping
// ErrInvalidArgument is invalid_argument, context.DeadlineExceeded deadline_exceeded,
// context.Canceled cancelled, ErrMessageTooLarge message_too_large, any other error
// error. A panic is recovered and reaches Python as kind panic; the runtime goes on.
type CallbackFunc func(ctx context.Context, args json.RawMessage) (any, error)

// CallbackOK is the outcome of a callback that returned a result.
const CallbackOK = "ok"

// CallbackObserver hears of every callback once it is over: its name, its outcome
// (CallbackOK, or the wire string of the workerv1.GoErrorKind Python gets: "error",
// "panic", "cancelled", ...) and how long its Go function ran. ctx is the callback's
// (its span is still open).
type CallbackObserver func(ctx context.Context, name, outcome string, took time.Duration)

// WithCallback lets the worker's tools call fn as name. A later registration of the
// same name replaces an earlier one.
func WithCallback(name string, fn CallbackFunc) Option {
	return func(c *config) {
		if c.callbacks == nil {
			c.callbacks = map[string]CallbackFunc{}
		}
		c.callbacks[name] = fn
	}
}

// WithCallbackObserver is called after every callback (for metrics).
func WithCallbackObserver(o CallbackObserver) Option {
	return func(c *config) { c.observeCallback = o }
}

// callbacksEnv names the environment variable that tells the worker which callbacks it
// can reach (a JSON array of names): its tools get an immediate error for any other, and
// Describe lists them.
const callbacksEnv = "PYVISOR_CALLBACKS"

// CheckCallbackName reports what is wrong with a callback name (nil for nothing): it must
// be 1 to 128 bytes of printable characters without spaces.
func CheckCallbackName(name string) error {
	switch {
	case name == "":
		return errors.New("callback name is empty")
	case len(name) > 128:
		return fmt.Errorf("callback name %.20q... is over 128 bytes", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("callback name %q is not UTF-8", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("callback name %q has spaces or control characters", name)
	}
	return nil
}

func callbackNames(fns map[string]CallbackFunc) []string {
	names := make([]string, 0, len(fns))
	for n := range fns {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func callbacksJSON(fns map[string]CallbackFunc) string {
	b, _ := json.Marshal(callbackNames(fns)) // strings always encode
	return string(b)
}

// callbackKind is the kind an error of a Go callback reaches Python with.
func callbackKind(err error) workerv1.GoErrorKind {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		return workerv1.GoErrorKind_GO_ERROR_KIND_INVALID_ARGUMENT
	case errors.Is(err, context.DeadlineExceeded):
		return workerv1.GoErrorKind_GO_ERROR_KIND_DEADLINE_EXCEEDED
	case errors.Is(err, context.Canceled):
		return workerv1.GoErrorKind_GO_ERROR_KIND_CANCELLED
	case errors.Is(err, ErrMessageTooLarge):
		return workerv1.GoErrorKind_GO_ERROR_KIND_MESSAGE_TOO_LARGE
	}
	return workerv1.GoErrorKind_GO_ERROR_KIND_ERROR
}
