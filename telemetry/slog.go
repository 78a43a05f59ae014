package telemetry

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rs/zerolog"
)

// Slog returns a log/slog logger that writes through zerolog, so libraries that log
// with slog (protoactor-go does) end up in the same stream, with the same format.
func Slog(log zerolog.Logger) *slog.Logger {
	return slog.New(&slogHandler{log: log})
}

type slogHandler struct {
	log    zerolog.Logger
	attrs  []groupedAttr // from WithAttrs, each with the group prefix of its time
	prefix string
}

type groupedAttr struct {
	prefix string
	attr   slog.Attr
}

func (h *slogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return h.log.GetLevel() <= zerologLevel(level)
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	ev := h.log.WithLevel(zerologLevel(r.Level))
	if ev == nil {
		return nil
	}
	for _, a := range h.attrs {
		ev = addAttr(ev, a.prefix, a.attr)
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = addAttr(ev, h.prefix, a)
		return true
	})
	ev.Msg(r.Message)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	all := append([]groupedAttr(nil), h.attrs...)
	for _, a := range attrs {
		all = append(all, groupedAttr{h.prefix, a})
	}
	return &slogHandler{log: h.log, attrs: all, prefix: h.prefix}
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	return &slogHandler{log: h.log, attrs: h.attrs, prefix: h.prefix + name + "."}
}

func addAttr(ev *zerolog.Event, prefix string, a slog.Attr) *zerolog.Event {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			ev = addAttr(ev, prefix+a.Key+".", g)
		}
		return ev
	}
	key := prefix + a.Key
	if key == zerolog.MessageFieldName || key == zerolog.LevelFieldName {
		key = "slog_" + key // never a second "message" or "level" in one line
	}
	switch x := v.Any().(type) {
	case error:
		return ev.Str(key, x.Error())
	case fmt.Stringer:
		return ev.Str(key, x.String())
	default:
		return ev.Interface(key, x)
	}
}

func zerologLevel(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.ErrorLevel
	case l >= slog.LevelWarn:
		return zerolog.WarnLevel
	case l >= slog.LevelInfo:
		return zerolog.InfoLevel
	default:
		return zerolog.DebugLevel
	}
}
