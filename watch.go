package pyvisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/pyvisor/pyvisor/telemetry"
)

// watchQuiet is how long a pool's tool code must stay unchanged after a change before
// development mode reloads it: one save by an editor, or a checkout, is many events.
const watchQuiet = 300 * time.Millisecond

// watchPools starts development mode for each pool that asks for it (Upgrade.Watch): it
// watches the pool's Dir, or the runtime's working directory, where the pool's workers run.
func (r *Runtime) watchPools() error {
	for _, pc := range r.cfg.Pools {
		if !pc.Upgrade.Watch {
			continue
		}
		pool, dir := pc.Name, cmp.Or(pc.Dir, ".")
		log := r.log.With().Str(telemetry.LabelPool, pool).Logger()
		w, err := watchCode(dir, watchQuiet, func(ctx context.Context) error {
			if err := r.awaitUpgrade(ctx, pool); err != nil {
				return err
			}
			return r.reloadLogged(ctx, pool, "development mode")
		}, log)
		if err != nil {
			return fmt.Errorf("pool %s: development mode: %w", pool, err)
		}
		r.watches = append(r.watches, w)
		log.Info().Str("dir", w.root).Msg("development mode: the pool reloads when its tool code changes")
	}
	return nil
}

// awaitUpgrade returns once no Reload of pool runs (a deploy's, a signal's), so that
// development mode reloads after it instead of being refused.
func (r *Runtime) awaitUpgrade(ctx context.Context, pool string) error {
	for {
		st, err := r.poolStats(ctx, pool)
		if err != nil || !st.Upgrading {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(watchQuiet):
		}
	}
}

// unwatchPools ends development mode: no reload starts after it returns.
func (r *Runtime) unwatchPools() {
	for _, w := range r.watches {
		w.stop()
	}
}

// codeWatch is development mode for one pool (PoolConfig.Upgrade.Watch): it watches the
// .py files under the pool's folder and, once they have been quiet for watchQuiet after a
// change, calls reload. A change during a reload brings one more reload after it.
type codeWatch struct {
	root   string
	quiet  time.Duration
	fs     *fsnotify.Watcher
	dirs   map[string]bool // the folders watched; only run's goroutine touches it after start
	reload func(context.Context) error
	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed once run has returned and fs is closed
}

// watchCode starts watching the tree under root (see watchedDir for what is skipped).
// stop ends it.
func watchCode(root string, quiet time.Duration, reload func(context.Context) error, log zerolog.Logger) (*codeWatch, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	w := &codeWatch{root: root, quiet: quiet, fs: fsw, dirs: map[string]bool{}, reload: reload, log: log, done: make(chan struct{})}
	if _, err := w.add(root); err != nil {
		_ = fsw.Close()
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w, nil
}

// stop ends the watch: a reload under way is abandoned (its context ends), the watcher's
// goroutines end and its file descriptor is closed before stop returns.
func (w *codeWatch) stop() {
	w.cancel()
	<-w.done
}

func (w *codeWatch) run(ctx context.Context) {
	defer close(w.done)
	defer func() { _ = w.fs.Close() }()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var reloaded chan error // non-nil while a reload runs
	again := false          // the code changed during that reload
	for {
		select {
		case <-ctx.Done():
			if reloaded != nil {
				<-reloaded
			}
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if w.changed(ev) {
				quiet.Reset(w.quiet)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			// An overflow lost events: they may have been changes.
			w.log.Warn().Err(err).Str("dir", w.root).Msg("development mode: watching the tool code")
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				quiet.Reset(w.quiet)
			}
		case <-quiet.C:
			if reloaded != nil {
				again = true
				continue
			}
			reloaded = w.start(ctx)
		case err := <-reloaded:
			reloaded = nil
			switch {
			case errors.Is(err, ErrUpgrading): // another Reload runs: try once it is done
				quiet.Reset(w.quiet)
			case again:
				again = false
				reloaded = w.start(ctx)
			}
		}
	}
}

// start runs reload in a goroutine of its own, so that events are read meanwhile.
func (w *codeWatch) start(ctx context.Context) chan error {
	out := make(chan error, 1)
	go func() { out <- w.reload(ctx) }()
	return out
}

// changed says whether ev changes the tool code: a .py file written, created, removed or
// renamed, or a folder with .py files created (it is watched from now on), removed or
// renamed.
func (w *codeWatch) changed(ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return false // a chmod, or a touch's times
	}
	if w.dirs[ev.Name] && !ev.Has(fsnotify.Create) {
		delete(w.dirs, ev.Name)
		_ = w.fs.Remove(ev.Name) // gone already when it was removed
		return true
	}
	name := filepath.Base(ev.Name)
	if ev.Has(fsnotify.Create) {
		if info, err := os.Lstat(ev.Name); err == nil && info.IsDir() {
			if !watchedDir(name) {
				return false
			}
			files, err := w.add(ev.Name)
			if err != nil {
				w.log.Warn().Err(err).Str("dir", ev.Name).Msg("development mode: a new folder is not watched")
			}
			return files > 0
		}
	}
	return codeFile(name)
}

// add watches dir and the folders under it that watchedDir keeps, and counts the code
// files it finds there. A folder that cannot be read below dir is left out.
func (w *codeWatch) add(dir string) (files int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil && path == dir:
			return err
		case err != nil:
			return nil // unreadable, or gone meanwhile
		case !d.IsDir():
			if codeFile(d.Name()) {
				files++
			}
			return nil
		case path != dir && !watchedDir(d.Name()):
			return filepath.SkipDir
		}
		if err := w.fs.Add(path); err != nil {
			if path == dir {
				return err
			}
			w.log.Warn().Err(err).Str("dir", path).Msg("development mode: a folder is not watched")
			return filepath.SkipDir
		}
		w.dirs[path] = true
		return nil
	})
	return files, err
}

// watchedDir says whether development mode looks into a folder of this name: not into
// __pycache__, a hidden folder (.git, .venv) or an installed environment's site-packages.
func watchedDir(name string) bool {
	return name != "__pycache__" && name != "site-packages" && !strings.HasPrefix(name, ".")
}

// codeFile says whether a file of this name is tool code: a .py file, not hidden (an
// editor's lock file such as .#tools.py).
func codeFile(name string) bool {
	return strings.HasSuffix(name, ".py") && !strings.HasPrefix(name, ".")
}
