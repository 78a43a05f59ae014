package supervision

import "time"

// window is the restart intensity: the times of the restarts of one
// supervisor, all children together. A restart at t counts at now while
// now-t < within.
type window struct {
	max    int
	within time.Duration
	times  []time.Time
}

// add records a restart at now and reports whether the intensity is exceeded
// (more than max restarts within the window, this one included).
func (w *window) add(now time.Time) (exceeded bool) {
	w.prune(now)
	w.times = append(w.times, now)
	return len(w.times) > w.max
}

func (w *window) prune(now time.Time) {
	keep := w.times[:0]
	for _, t := range w.times {
		if now.Sub(t) < w.within {
			keep = append(keep, t)
		}
	}
	w.times = keep
}
