package supervision

import (
	"runtime"
	"strconv"
	"strings"
)

// Stack is the call stack of a panic, kept as program counters (cheap to
// capture on every failure) and formatted on demand.
type Stack []uintptr

// captureStack records the stack of the panicking goroutine; called from a
// deferred recover, it still sees the frames of the panic site.
func captureStack() Stack {
	var pcs [64]uintptr
	n := runtime.Callers(3, pcs[:])
	return append(Stack(nil), pcs[:n]...)
}

// String formats the stack like a Go traceback, starting at the function that
// panicked: one "function\n\tfile:line" pair per frame.
func (s Stack) String() string {
	var b strings.Builder
	frames := runtime.CallersFrames(s)
	started := false
	for {
		f, more := frames.Next()
		if started {
			b.WriteString(f.Function)
			b.WriteString("\n\t")
			b.WriteString(f.File)
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(f.Line))
			b.WriteByte('\n')
		}
		if f.Function == "runtime.gopanic" {
			started = true
		}
		if !more {
			break
		}
	}
	if !started { // not captured during a panic: show everything
		return Stack(s).all()
	}
	return b.String()
}

func (s Stack) all() string {
	var b strings.Builder
	frames := runtime.CallersFrames(s)
	for {
		f, more := frames.Next()
		b.WriteString(f.Function + "\n\t" + f.File + ":" + strconv.Itoa(f.Line) + "\n")
		if !more {
			return b.String()
		}
	}
}
