package pyvisor_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/cluster"
)

func testdata(name string) string { return filepath.Join("testdata", "config", name) }

func minimal() pyvisor.Config {
	return pyvisor.Config{Pools: []pyvisor.PoolConfig{{Name: "default", Tools: []string{"pyvisor_worker.examples"}}}}
}

// defaultPool is minimal()'s pool with every default filled in.
func defaultPool() pyvisor.PoolConfig {
	return pyvisor.PoolConfig{
		Name:             "default",
		Tools:            []string{"pyvisor_worker.examples"},
		Workers:          2,
		StartupBatch:     8,
		MaxConcurrent:    1,
		QueueSize:        1000,
		QueueTimeout:     10 * time.Second,
		Affinity:         "hint",
		HandshakeTimeout: 10 * time.Second,
		LoadTimeout:      10 * time.Minute,
		StopTimeout:      5 * time.Second,
		CancelGrace:      5 * time.Second,
		MaxMessageBytes:  16 << 20,
		Heartbeat: pyvisor.HeartbeatConfig{
			Interval: 2 * time.Second, Timeout: 10 * time.Second, MaxMissed: 3, InitialDelay: 2 * time.Second,
		},
		Restart: pyvisor.RestartConfig{MaxRestarts: 3, Within: 5 * time.Second},
		Upgrade: pyvisor.UpgradeConfig{WarmUpTimeout: time.Minute, DrainTimeout: 30 * time.Second, MaxSurge: 1},
		SharedMemory: pyvisor.SharedMemoryConfig{
			Threshold: 64 << 10, MaxPayloadBytes: 2 << 30, PoolBytes: 4 << 30, WorkerBytes: 4 << 30,
			RetainBytes: 256 << 20, TrimAfter: 10 * time.Second,
		},
	}
}

// fullConfig is testdata/config/full.{yaml,yml,json}.
func fullConfig() pyvisor.Config {
	return pyvisor.Config{
		Python:       "/opt/venv/bin/python",
		StartTimeout: 90 * time.Second,
		StopTimeout:  45 * time.Second,
		Metrics:      pyvisor.MetricsConfig{Enabled: true, Address: "127.0.0.1:9600"},
		Pools: []pyvisor.PoolConfig{{
			Name:             "tools",
			Tools:            []string{"pyvisor_worker.examples", "my_project.tools"},
			Workers:          4,
			StartupBatch:     2,
			MaxConcurrent:    3,
			QueueSize:        50,
			QueueTimeout:     1500 * time.Millisecond,
			Affinity:         "strict",
			HandshakeTimeout: 20 * time.Second,
			LoadTimeout:      2 * time.Minute,
			StopTimeout:      7 * time.Second,
			CancelGrace:      3 * time.Second,
			MaxMessageBytes:  1 << 20,
			Env:              map[string]string{"DEBUG": "1", "LANG": "C.UTF-8"},
			Dir:              "/srv/work",
			Slots: pyvisor.SlotsConfig{
				Devices: []string{"0", "1"},
				Env:     map[string]string{"CUDA_VISIBLE_DEVICES": "{{.Device}}", "PORT": "{{add 9000 .Slot}}"},
			},
			Heartbeat: pyvisor.HeartbeatConfig{
				Enabled: true, Interval: time.Second, Timeout: 4 * time.Second, MaxMissed: 5, InitialDelay: 3 * time.Second,
			},
			Restart: pyvisor.RestartConfig{
				MaxRestarts: 10, Within: time.Minute,
				Backoff: pyvisor.BackoffConfig{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 1.5},
			},
			Recycle:     pyvisor.RecycleConfig{MaxCalls: 10000, MaxAge: time.Hour, MaxRSSBytes: 512 << 20, MaxGPUBytes: 8 << 30},
			MemoryLimit: 4 << 30,
			Sessions:    pyvisor.SessionsConfig{IdleTimeout: 15 * time.Minute, Max: 50000},
			Upgrade: pyvisor.UpgradeConfig{WarmUpTool: "echo", WarmUpArgs: `{"text": "warm"}`, WarmUpTimeout: 2 * time.Minute, DrainTimeout: 45 * time.Second,
				Canary: 20 * time.Second, MaxFailureRatio: 0.05, SessionDeadline: 10 * time.Minute, MaxSurge: 2, Watch: true},
			SharedMemory: pyvisor.SharedMemoryConfig{
				Threshold: 1 << 20, MaxPayloadBytes: 1 << 30, PoolBytes: 8 << 30, WorkerBytes: 2 << 30,
				RetainBytes: 64 << 20, TrimAfter: 30 * time.Second,
			},
		}, {
			Name: "batch-2", Tools: []string{"batch"}, QueueSize: pyvisor.NoQueue,
		}},
	}
}

// defaultMetrics is the metrics section WithDefaults gives: off, with the address set.
var defaultMetrics = pyvisor.MetricsConfig{Address: pyvisor.DefaultMetricsAddress}

func TestWithDefaults(t *testing.T) {
	withPool := func(edit func(*pyvisor.PoolConfig)) pyvisor.Config {
		c := minimal()
		edit(&c.Pools[0])
		return c
	}
	defaulted := func(edit func(*pyvisor.PoolConfig)) pyvisor.Config {
		p := defaultPool()
		edit(&p)
		return pyvisor.Config{StopTimeout: 30 * time.Second, Metrics: defaultMetrics, Pools: []pyvisor.PoolConfig{p}}
	}
	same := func(*pyvisor.PoolConfig) {}
	tests := []struct {
		name string
		in   pyvisor.Config
		want pyvisor.Config
	}{
		{"zero config", pyvisor.Config{}, pyvisor.Config{StopTimeout: 30 * time.Second, Metrics: defaultMetrics}},
		{"minimal pool", minimal(), defaulted(same)},
		{"set values are kept", fullConfig(), func() pyvisor.Config {
			c := fullConfig()
			p := defaultPool()
			p.Name, p.Tools, p.QueueSize = "batch-2", []string{"batch"}, pyvisor.NoQueue
			c.Pools[1] = p
			return c
		}()},
		{"python stays empty", pyvisor.Config{Python: ""}, pyvisor.Config{StopTimeout: 30 * time.Second, Metrics: defaultMetrics}},
		{"initial delay defaults to the interval",
			withPool(func(p *pyvisor.PoolConfig) { p.Heartbeat.Interval = 3 * time.Second }),
			defaulted(func(p *pyvisor.PoolConfig) {
				p.Heartbeat.Interval, p.Heartbeat.InitialDelay = 3*time.Second, 3*time.Second
			})},
		{"max restarts 0 with a window forbids restarts",
			withPool(func(p *pyvisor.PoolConfig) { p.Restart.Within = time.Second }),
			defaulted(func(p *pyvisor.PoolConfig) { p.Restart = pyvisor.RestartConfig{MaxRestarts: 0, Within: time.Second} })},
		{"max restarts without a window gets the default window",
			withPool(func(p *pyvisor.PoolConfig) { p.Restart.MaxRestarts = 7 }),
			defaulted(func(p *pyvisor.PoolConfig) {
				p.Restart = pyvisor.RestartConfig{MaxRestarts: 7, Within: 5 * time.Second}
			})},
		{"backoff defaults when initial is set",
			withPool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Initial = time.Second }),
			defaulted(func(p *pyvisor.PoolConfig) {
				p.Restart.Backoff = pyvisor.BackoffConfig{Initial: time.Second, Max: 30 * time.Second, Multiplier: 2}
			})},
		{"backoff max is at least initial",
			withPool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Initial = time.Minute }),
			defaulted(func(p *pyvisor.PoolConfig) {
				p.Restart.Backoff = pyvisor.BackoffConfig{Initial: time.Minute, Max: time.Minute, Multiplier: 2}
			})},
		{"no backoff leaves max and multiplier zero", minimal(), defaulted(same)},
		{"recycle stays off", minimal(), defaulted(func(p *pyvisor.PoolConfig) { p.Recycle = pyvisor.RecycleConfig{} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WithDefaults:\n got %+v\nwant %+v", got, tt.want)
			}
			if again := got.WithDefaults(); !reflect.DeepEqual(again, got) {
				t.Errorf("WithDefaults is not idempotent:\n once  %+v\n twice %+v", got, again)
			}
			if err := got.Validate(); len(tt.in.Pools) > 0 && err != nil {
				t.Errorf("defaults do not validate: %v", err)
			}
		})
	}
}

func TestWithDefaultsDoesNotChangeItsReceiver(t *testing.T) {
	c := minimal()
	_ = c.WithDefaults()
	if !reflect.DeepEqual(c, minimal()) {
		t.Errorf("receiver changed: %+v", c)
	}
}

func TestPool(t *testing.T) {
	c := fullConfig()
	tests := []struct {
		name   string
		want   string
		wantOK bool
	}{{"tools", "tools", true}, {"batch-2", "batch-2", true}, {"nope", "", false}, {"", "", false}}
	for _, tt := range tests {
		p, ok := c.Pool(tt.name)
		if ok != tt.wantOK || p.Name != tt.want {
			t.Errorf("Pool(%q) = %q, %v; want %q, %v", tt.name, p.Name, ok, tt.want, tt.wantOK)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		file string
		want pyvisor.Config
	}{
		{"full.yaml", fullConfig()},
		{"full.yml", fullConfig()},
		{"full.json", fullConfig()},
		{"minimal.yaml", minimal()},
		{"empty.yaml", pyvisor.Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := pyvisor.LoadConfig(testdata(tt.file))
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			// Relative paths are the file's: Dir is its folder.
			if dir, _ := filepath.Abs(filepath.Dir(testdata(tt.file))); got.Dir != dir {
				t.Errorf("Dir = %q, want the file's folder %q", got.Dir, dir)
			}
			got.Dir = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LoadConfig:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadConfigExampleIsValidAndDocumented(t *testing.T) {
	cfg, err := pyvisor.LoadConfig(testdata("example.yaml"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	// Every value of the example is its default, but for the heartbeat, env,
	// and the backoff's max and multiplier (their defaults when initial > 0).
	want := defaultPool()
	want.Heartbeat.Enabled = true
	want.Env = map[string]string{"PYTHONUNBUFFERED": "1"}
	want.Restart.Backoff = pyvisor.BackoffConfig{Max: 30 * time.Second, Multiplier: 2}
	want.Dir = cfg.Dir // a pool with no dir runs in the file's folder
	if got := cfg.WithDefaults(); !reflect.DeepEqual(got.Pools[0], want) {
		t.Errorf("example pool:\n got %+v\nwant %+v", got.Pools[0], want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	example, err := os.ReadFile(testdata("example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(example)) {
		t.Errorf("docs/configuration.md does not contain testdata/config/example.yaml verbatim")
	}
	for _, key := range yamlKeys(reflect.TypeFor[pyvisor.Config]()) {
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", key)
		}
	}
}

// yamlKeys lists the YAML keys of a config struct as the reference names
// them: dotted within a pool ("heartbeat.interval"), a pool's keys bare.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("yaml")
		keys = append(keys, key)
		switch {
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, yamlKeys(f.Type.Elem())...)
		case f.Type.Kind() == reflect.Struct:
			for _, sub := range yamlKeys(f.Type) {
				keys = append(keys, key+"."+sub)
			}
		}
	}
	return keys
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    []string // substrings of the error, in order
		invalid bool     // matches ErrInvalidConfig
		cause   error
	}{
		{"unknown nested field", "unknown.yaml",
			[]string{"unknown.yaml:6: pools[0].heartbeat.intervl: unknown field (known: enabled, interval, timeout, max_missed, initial_delay, trace)"},
			true, nil},
		{"unknown top-level field, also reported", "unknown.yaml",
			[]string{"unknown.yaml:7: start_timout: unknown field (known: python, dir, environments, pools, start_timeout, stop_timeout, metrics, cluster)"},
			true, nil},
		{"unknown field in JSON is case-sensitive", "unknown.json",
			[]string{"unknown.json:3: pools[0].Workers: unknown field"}, true, nil},
		{"duration without a unit", "badtypes.yaml",
			[]string{`badtypes.yaml:1: start_timeout: want a duration such as "2s", got "10"`}, true, nil},
		{"list wanted", "badtypes.yaml",
			[]string{`badtypes.yaml:4: pools[0].tools: want a list, got string "pyvisor_worker.examples"`}, true, nil},
		{"integer wanted", "badtypes.yaml",
			[]string{`badtypes.yaml:5: pools[0].workers: want an integer, got string "two"`}, true, nil},
		{"bad duration", "badtypes.yaml",
			[]string{`badtypes.yaml:6: pools[0].queue_timeout: want a duration such as "2s", got "soon"`}, true, nil},
		{"quoted boolean", "badtypes.yaml",
			[]string{`badtypes.yaml:8: pools[0].heartbeat.enabled: want true or false, got string "yes"`}, true, nil},
		{"fractional integer", "badtypes.yaml",
			[]string{`badtypes.yaml:9: pools[0].heartbeat.max_missed: want an integer, got number "2.5"`}, true, nil},
		{"number wanted", "badtypes.yaml",
			[]string{`badtypes.yaml:12: pools[0].restart.backoff.multiplier: want a number, got string "fast"`}, true, nil},
		{"mapping wanted", "badtypes.yaml",
			[]string{`badtypes.yaml:13: pools[0].env: want a mapping, got a list`}, true, nil},
		{"duplicate key", "duplicate.yaml",
			[]string{"duplicate.yaml:5: pools[0].workers: duplicate key"}, true, nil},
		{"JSON syntax", "syntax.json",
			[]string{"syntax.json:3: invalid config: invalid character '}'"}, true, nil},
		{"YAML syntax", "syntax.yaml",
			[]string{"syntax.yaml: invalid config: yaml: line"}, true, nil},
		{"several documents", "twodocs.yaml",
			[]string{"twodocs.yaml:2: invalid config: more than one document"}, true, nil},
		{"missing file", "missing.yaml",
			[]string{"load config: open testdata/config/missing.yaml"}, false, fs.ErrNotExist},
		{"unsupported extension", "config.toml",
			[]string{`load config: testdata/config/config.toml: unsupported extension ".toml" (want .yaml, .yml or .json)`}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pyvisor.LoadConfig(testdata(tt.file))
			if err == nil {
				t.Fatal("LoadConfig: no error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			if errors.Is(err, pyvisor.ErrInvalidConfig) != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = %v, want %v", !tt.invalid, tt.invalid)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("error does not wrap %v", tt.cause)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := pyvisor.LoadConfig(testdata("badtypes.yaml"))
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 8 {
		t.Fatalf("want 8 joined errors, got %v", err)
	}
	for _, e := range joined.Unwrap() {
		var fe *pyvisor.FieldError
		if !errors.As(e, &fe) || fe.Field == "" {
			t.Errorf("not a *FieldError naming a field: %v", e)
		}
	}
}

func TestParseConfig(t *testing.T) {
	yamlCfg, err := pyvisor.ParseConfig("embedded.yaml", []byte("pools: [{name: default, tools: [pyvisor_worker.examples]}]"))
	if err != nil || !reflect.DeepEqual(yamlCfg, minimal()) {
		t.Errorf("ParseConfig yaml = %+v, %v", yamlCfg, err)
	}
	jsonCfg, err := pyvisor.ParseConfig("embedded.json", []byte(`{"pools": [{"name": "default", "tools": ["pyvisor_worker.examples"]}]}`))
	if err != nil || !reflect.DeepEqual(jsonCfg, minimal()) {
		t.Errorf("ParseConfig json = %+v, %v", jsonCfg, err)
	}
	// YAML that is not JSON is rejected in a .json file.
	if _, err := pyvisor.ParseConfig("embedded.json", []byte("pools: []")); !errors.Is(err, pyvisor.ErrInvalidConfig) {
		t.Errorf("ParseConfig of YAML as JSON: %v", err)
	}
	// The document must be a mapping.
	if _, err := pyvisor.ParseConfig("list.yaml", []byte("- a\n")); err == nil ||
		err.Error() != "list.yaml:1: (top level): want a mapping, got a list" {
		t.Errorf("ParseConfig of a list: %v", err)
	}
	// An anchor and its alias decode alike.
	anchored := "pools:\n- &p {name: a, tools: [m]}\n- *p\n"
	cfg, err := pyvisor.ParseConfig("a.yaml", []byte(anchored))
	if err != nil || len(cfg.Pools) != 2 || cfg.Pools[1].Name != "a" {
		t.Errorf("ParseConfig with alias = %+v, %v", cfg, err)
	}
}

func TestWithEnv(t *testing.T) {
	two := func() pyvisor.Config {
		return pyvisor.Config{Pools: []pyvisor.PoolConfig{{Name: "a"}, {Name: "b", Workers: 9}}}
	}
	each := func(set func(*pyvisor.PoolConfig)) pyvisor.Config {
		c := two()
		for i := range c.Pools {
			set(&c.Pools[i])
		}
		return c
	}
	tests := []struct {
		name string
		env  map[string]string
		want pyvisor.Config
	}{
		{"no variables", nil, two()},
		{"python", map[string]string{"PYVISOR_PYTHON": "/usr/bin/python3.12"},
			func() pyvisor.Config { c := two(); c.Python = "/usr/bin/python3.12"; return c }()},
		{"workers, every pool", map[string]string{"PYVISOR_WORKERS": "5"},
			each(func(p *pyvisor.PoolConfig) { p.Workers = 5 })},
		{"heartbeat on", map[string]string{"PYVISOR_HEARTBEAT": "true"},
			each(func(p *pyvisor.PoolConfig) { p.Heartbeat.Enabled = true })},
		{"heartbeat 1", map[string]string{"PYVISOR_HEARTBEAT": "1"},
			each(func(p *pyvisor.PoolConfig) { p.Heartbeat.Enabled = true })},
		{"queue size", map[string]string{"PYVISOR_QUEUE_SIZE": "-1"},
			each(func(p *pyvisor.PoolConfig) { p.QueueSize = pyvisor.NoQueue })},
		{"queue timeout", map[string]string{"PYVISOR_QUEUE_TIMEOUT": "250ms"},
			each(func(p *pyvisor.PoolConfig) { p.QueueTimeout = 250 * time.Millisecond })},
		{"empty values are ignored", map[string]string{
			"PYVISOR_PYTHON": "", "PYVISOR_WORKERS": "", "PYVISOR_HEARTBEAT": "", "PYVISOR_QUEUE_SIZE": "", "PYVISOR_QUEUE_TIMEOUT": "",
		}, two()},
		{"other variables are ignored", map[string]string{"PYVISOR_WORKER": "3", "WORKERS": "3"}, two()},
		{"metrics address enables the endpoint", map[string]string{"PYVISOR_METRICS_ADDR": "127.0.0.1:0"},
			func() pyvisor.Config {
				c := two()
				c.Metrics = pyvisor.MetricsConfig{Enabled: true, Address: "127.0.0.1:0"}
				return c
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := two()
			got, err := in.WithEnv(lookup(tt.env))
			if err != nil {
				t.Fatalf("WithEnv: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("WithEnv:\n got %+v\nwant %+v", got, tt.want)
			}
			if !reflect.DeepEqual(in, two()) {
				t.Errorf("WithEnv changed its receiver: %+v", in)
			}
		})
	}
}

func TestWithEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"workers", map[string]string{"PYVISOR_WORKERS": "many"}, []string{`PYVISOR_WORKERS="many": want an integer`}},
		{"heartbeat", map[string]string{"PYVISOR_HEARTBEAT": "sometimes"}, []string{`PYVISOR_HEARTBEAT="sometimes": want true or false`}},
		{"queue size", map[string]string{"PYVISOR_QUEUE_SIZE": "1e3"}, []string{`PYVISOR_QUEUE_SIZE="1e3": want an integer`}},
		{"queue timeout", map[string]string{"PYVISOR_QUEUE_TIMEOUT": "10"}, []string{`PYVISOR_QUEUE_TIMEOUT="10": want a duration such as "10s"`}},
		{"all of them", map[string]string{"PYVISOR_WORKERS": "x", "PYVISOR_QUEUE_TIMEOUT": "y"},
			[]string{"PYVISOR_WORKERS", "PYVISOR_QUEUE_TIMEOUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := minimal()
			got, err := in.WithEnv(lookup(tt.env))
			if !errors.Is(err, pyvisor.ErrInvalidConfig) {
				t.Fatalf("WithEnv error %v does not match ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q: %v", w, err)
				}
			}
			if !reflect.DeepEqual(got, minimal()) {
				t.Errorf("WithEnv returned a changed config on error: %+v", got)
			}
		})
	}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestValidate(t *testing.T) {
	type edit = func(*pyvisor.Config)
	pool := func(f func(*pyvisor.PoolConfig)) edit { return func(c *pyvisor.Config) { f(&c.Pools[0]) } }
	tests := []struct {
		name string
		edit edit
		want string // the whole message; "" = valid
	}{
		// Valid configurations, at the edges.
		{"minimal", func(*pyvisor.Config) {}, ""},
		{"full", func(c *pyvisor.Config) { *c = fullConfig() }, ""},
		{"256 workers", pool(func(p *pyvisor.PoolConfig) { p.Workers = 256 }), ""},
		{"no queue", pool(func(p *pyvisor.PoolConfig) { p.QueueSize = pyvisor.NoQueue }), ""},
		{"no restarts", pool(func(p *pyvisor.PoolConfig) { p.Restart = pyvisor.RestartConfig{Within: time.Second} }), ""},
		{"multiplier 1", pool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff = pyvisor.BackoffConfig{Initial: 1, Multiplier: 1} }), ""},
		{"strict affinity", pool(func(p *pyvisor.PoolConfig) { p.Affinity = "strict" }), ""},
		{"dotted and underscored module", pool(func(p *pyvisor.PoolConfig) { p.Tools = []string{"_a.b_2.C"} }), ""},
		{"slots", func(c *pyvisor.Config) {
			c.Pools[0].Workers = 4
			c.Pools[0].Slots = pyvisor.SlotsConfig{Devices: []string{"0", "1"}, Env: map[string]string{
				"CUDA_VISIBLE_DEVICES": "{{.Device}}", "PORT": "{{add 9000 .Slot}}", "RUN": "{{.Pool}}-{{.Slot}}-of-{{.Workers}}",
			}}
		}, ""},
		{"slots without devices", slots(2, nil, "CUDA_VISIBLE_DEVICES", "{{.Device}}"), ""},

		{"metrics on a free port", func(c *pyvisor.Config) { c.Metrics = pyvisor.MetricsConfig{Enabled: true, Address: "127.0.0.1:0"} }, ""},
		{"a bad metrics address is fine while metrics are off", func(c *pyvisor.Config) { c.Metrics.Address = "nowhere" }, ""},

		{"an automanaged node", func(c *pyvisor.Config) { c.Cluster = automanagedNode() }, ""},
		{"an etcd node that only calls", func(c *pyvisor.Config) {
			c.Pools = nil
			c.Cluster = pyvisor.ClusterConfig{Provider: "etcd", Etcd: cluster.EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}}}
		}, ""},

		// One case per rule.
		{"cluster provider", func(c *pyvisor.Config) { c.Cluster.Provider = "consul" },
			`cluster.provider: must be "automanaged" or "etcd", got "consul"`},
		{"automanaged port and peers", func(c *pyvisor.Config) { c.Cluster.Provider = "automanaged" },
			"cluster.automanaged.port: must be a TCP port, got 0\ncluster.automanaged.peers: at least one peer (host:port of a node's automanaged port) is required"},
		{"automanaged peer", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Automanaged.Peers[1] = "nowhere" },
			`cluster.automanaged.peers[1]: must be host:port, got "nowhere"`},
		{"etcd endpoints and ttl", func(c *pyvisor.Config) {
			c.Cluster = pyvisor.ClusterConfig{Provider: "etcd", Etcd: cluster.EtcdConfig{TTL: 500 * time.Millisecond}}
		},
			"cluster.etcd.endpoints: at least one etcd endpoint is required\ncluster.etcd.ttl: must be at least 1s (etcd leases count seconds), got 500ms"},
		{"cluster name", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Name = "my cluster" },
			`cluster.name: must match [A-Za-z0-9_-]+, got "my cluster"`},
		{"node name", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Node = "gpu/1" },
			`cluster.node: must have no spaces or slashes, got "gpu/1"`},
		{"bind", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Bind = "6331" },
			`cluster.bind: must be host:port, got "6331"`},
		{"advertise", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Advertise = "10.0.0.1:0" },
			`cluster.advertise: must be host:port, got "10.0.0.1:0"`},
		{"hosted pool", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Host = []string{"default", "gpu"} },
			`cluster.host[1]: "gpu" is not one of this node's pools`},
		{"advertise with a wildcard bind", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.Bind = "0.0.0.0:6340" },
			`cluster.advertise: is required when cluster.bind listens on every interface ("0.0.0.0:6340"): the other nodes need an address to reach`},
		{"stream window", func(c *pyvisor.Config) { c.Cluster = automanagedNode(); c.Cluster.StreamWindow = -1 },
			"cluster.stream_window: must be at least 1, got -1"},
		{"metrics address", func(c *pyvisor.Config) { c.Metrics = pyvisor.MetricsConfig{Enabled: true, Address: "nowhere"} },
			`metrics.address: must be host:port, got "nowhere"`},
		{"start timeout", func(c *pyvisor.Config) { c.StartTimeout = -time.Second },
			"start_timeout: must not be negative, got -1s"},
		{"stop timeout", func(c *pyvisor.Config) { c.StopTimeout = -1 },
			"stop_timeout: must be positive, got -1ns"},
		{"no pools", func(c *pyvisor.Config) { c.Pools = nil },
			"pools: at least one pool is required (or a cluster whose nodes host them)"},
		{"name required", pool(func(p *pyvisor.PoolConfig) { p.Name = "" }),
			"pools[0].name: is required"},
		{"name charset", pool(func(p *pyvisor.PoolConfig) { p.Name = "My Pool" }),
			`pools[0].name: must match [a-z0-9_-]+, got "My Pool"`},
		{"name unique", func(c *pyvisor.Config) { c.Pools = append(c.Pools, c.Pools[0]) },
			`pools[1].name: "default" is already the name of pools[0]`},
		{"tools required", pool(func(p *pyvisor.PoolConfig) { p.Tools = nil }),
			"pools[0].tools: at least one python module is required"},
		{"tool module name", pool(func(p *pyvisor.PoolConfig) { p.Tools = []string{"ok", "not-a.module"} }),
			`pools[0].tools[1]: must be a python module name, got "not-a.module"`},
		{"empty tool module", pool(func(p *pyvisor.PoolConfig) { p.Tools = []string{""} }),
			`pools[0].tools[0]: must be a python module name, got ""`},
		{"workers too few", pool(func(p *pyvisor.PoolConfig) { p.Workers = -1 }),
			"pools[0].workers: must be between 1 and 256, got -1"},
		{"workers too many", pool(func(p *pyvisor.PoolConfig) { p.Workers = 257 }),
			"pools[0].workers: must be between 1 and 256, got 257"},
		{"startup batch", pool(func(p *pyvisor.PoolConfig) { p.StartupBatch = -2 }),
			"pools[0].startup_batch: must be at least 1, got -2"},
		{"max concurrent", pool(func(p *pyvisor.PoolConfig) { p.MaxConcurrent = -1 }),
			"pools[0].max_concurrent: must be at least 1, got -1"},
		{"queue size", pool(func(p *pyvisor.PoolConfig) { p.QueueSize = -2 }),
			"pools[0].queue_size: must be at least 0, or -1 for no queue, got -2"},
		{"queue timeout", pool(func(p *pyvisor.PoolConfig) { p.QueueTimeout = -time.Millisecond }),
			"pools[0].queue_timeout: must be positive, got -1ms"},
		{"affinity", pool(func(p *pyvisor.PoolConfig) { p.Affinity = "sticky" }),
			`pools[0].affinity: must be "hint" or "strict", got "sticky"`},
		{"handshake timeout", pool(func(p *pyvisor.PoolConfig) { p.HandshakeTimeout = -time.Second }),
			"pools[0].handshake_timeout: must be positive, got -1s"},
		{"load timeout", pool(func(p *pyvisor.PoolConfig) { p.LoadTimeout = -time.Second }),
			"pools[0].load_timeout: must be positive, got -1s"},
		{"worker stop timeout", pool(func(p *pyvisor.PoolConfig) { p.StopTimeout = -time.Second }),
			"pools[0].stop_timeout: must be positive, got -1s"},
		{"max message bytes", pool(func(p *pyvisor.PoolConfig) { p.MaxMessageBytes = -1 }),
			"pools[0].max_message_bytes: must be at least 1, got -1"},
		{"env empty name", pool(func(p *pyvisor.PoolConfig) { p.Env = map[string]string{"": "x"} }),
			`pools[0].env[""]: variable name is empty`},
		{"env name with =", pool(func(p *pyvisor.PoolConfig) { p.Env = map[string]string{"A=B": "x"} }),
			`pools[0].env["A=B"]: variable name must not contain '=' or NUL`},
		{"env value with NUL", pool(func(p *pyvisor.PoolConfig) { p.Env = map[string]string{"A": "x\x00y"} }),
			`pools[0].env.A: value must not contain NUL`},
		{"heartbeat interval", pool(func(p *pyvisor.PoolConfig) { p.Heartbeat.Interval = -time.Second }),
			"pools[0].heartbeat.interval: must be positive, got -1s"},
		{"heartbeat timeout", pool(func(p *pyvisor.PoolConfig) { p.Heartbeat.Timeout = -time.Second }),
			"pools[0].heartbeat.timeout: must be positive, got -1s"},
		{"heartbeat max missed", pool(func(p *pyvisor.PoolConfig) { p.Heartbeat.MaxMissed = -1 }),
			"pools[0].heartbeat.max_missed: must be at least 1, got -1"},
		{"heartbeat initial delay", pool(func(p *pyvisor.PoolConfig) { p.Heartbeat.InitialDelay = -time.Second }),
			"pools[0].heartbeat.initial_delay: must not be negative, got -1s"},
		{"max restarts", pool(func(p *pyvisor.PoolConfig) { p.Restart.MaxRestarts = -1 }),
			"pools[0].restart.max_restarts: must be at least 0, got -1"},
		{"restart window", pool(func(p *pyvisor.PoolConfig) { p.Restart.Within = -time.Second }),
			"pools[0].restart.within: must be positive, got -1s"},
		{"backoff initial", pool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Initial = -time.Second }),
			"pools[0].restart.backoff.initial: must not be negative, got -1s"},
		{"backoff max negative", pool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Max = -time.Second }),
			"pools[0].restart.backoff.max: must not be negative, got -1s"},
		{"backoff max below initial", pool(func(p *pyvisor.PoolConfig) {
			p.Restart.Backoff = pyvisor.BackoffConfig{Initial: 2 * time.Second, Max: time.Second}
		}), "pools[0].restart.backoff.max: must be at least initial (2s), got 1s"},
		{"backoff multiplier below 1", pool(func(p *pyvisor.PoolConfig) {
			p.Restart.Backoff = pyvisor.BackoffConfig{Initial: time.Second, Multiplier: 0.5}
		}), "pools[0].restart.backoff.multiplier: must be a finite number at least 1, got 0.5"},
		{"backoff multiplier infinite", pool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Multiplier = math.Inf(1) }),
			"pools[0].restart.backoff.multiplier: must be a finite number at least 1, got +Inf"},
		{"backoff multiplier NaN", pool(func(p *pyvisor.PoolConfig) { p.Restart.Backoff.Multiplier = math.NaN() }),
			"pools[0].restart.backoff.multiplier: must be a finite number at least 1, got NaN"},
		{"recycle max calls", pool(func(p *pyvisor.PoolConfig) { p.Recycle.MaxCalls = -1 }),
			"pools[0].recycle.max_calls: must be at least 0, got -1"},
		{"recycle max age", pool(func(p *pyvisor.PoolConfig) { p.Recycle.MaxAge = -time.Hour }),
			"pools[0].recycle.max_age: must not be negative, got -1h0m0s"},
		{"recycle max rss", pool(func(p *pyvisor.PoolConfig) { p.Recycle.MaxRSSBytes = -1 }),
			"pools[0].recycle.max_rss_bytes: must be at least 0, got -1"},
		{"recycle max gpu bytes", pool(func(p *pyvisor.PoolConfig) { p.Recycle.MaxGPUBytes = -1 }),
			"pools[0].recycle.max_gpu_bytes: must be at least 0, got -1"},
		{"slots template syntax", slots(1, nil, "PORT", "{{add 9000 .Slot"),
			"pools[0].slots.env.PORT: is not a valid template: template: PORT:1: unclosed action"},
		{"slots template function", slots(1, nil, "PORT", "{{sub 9000 .Slot}}"),
			`pools[0].slots.env.PORT: is not a valid template: template: PORT:1: function "sub" not defined`},
		{"slots template field", slots(1, []string{"0"}, "CUDA_VISIBLE_DEVICES", "{{.GPU}}"),
			`pools[0].slots.env.CUDA_VISIBLE_DEVICES: fails for slot 0: template: CUDA_VISIBLE_DEVICES:1:2: executing "CUDA_VISIBLE_DEVICES" at <.GPU>: can't evaluate field GPU in type pyvisor.SlotData`},
		{"slots template argument", slots(1, nil, "PORT", "{{add .Pool 1}}"),
			`pools[0].slots.env.PORT: fails for slot 0: template: PORT:1:6: executing "PORT" at <.Pool>: wrong type for value; expected int; got string`},
		{"slots template failing for a later slot", slots(3, []string{"0", "1"}, "X", "{{if eq .Slot 2}}{{.Nope}}{{end}}"),
			`pools[0].slots.env.X: fails for slot 2: template: X:1:19: executing "X" at <.Nope>: can't evaluate field Nope in type pyvisor.SlotData`},
		{"slots value with NUL", slots(1, nil, "X", "a\x00{{.Slot}}"),
			"pools[0].slots.env.X: fails for slot 0: template: X: the value contains NUL"},
		{"slots env name", slots(1, nil, "A=B", "{{.Slot}}"),
			`pools[0].slots.env["A=B"]: variable name must not contain '=' or NUL`},
		{"slots env setting the slot", slots(1, nil, "PYVISOR_SLOT", "{{add 1 .Slot}}"),
			"pools[0].slots.env.PYVISOR_SLOT: is set by the runtime (the worker's slot and pool): it cannot be set here"},
		{"env setting the pool", pool(func(p *pyvisor.PoolConfig) { p.Env = map[string]string{"PYVISOR_POOL": "x"} }),
			"pools[0].env.PYVISOR_POOL: is set by the runtime (the worker's slot and pool): it cannot be set here"},
		{"slots device", slots(2, []string{"0", ""}, "CUDA_VISIBLE_DEVICES", "{{.Device}}"),
			`pools[0].slots.devices[1]: must be a device id such as "0", got ""`},
		{"slots devices unused", slots(2, []string{"0", "1"}, "", ""),
			"pools[0].slots.devices: are only used by slots.env templates ({{.Device}}), and there are none"},
		{"second pool's field", func(c *pyvisor.Config) {
			c.Pools = append(c.Pools, pyvisor.PoolConfig{Name: "b", Tools: []string{"m"}, Heartbeat: pyvisor.HeartbeatConfig{Interval: -1}})
		}, "pools[1].heartbeat.interval: must be positive, got -1ns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := minimal()
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate:\n got %q\nwant %q", err, tt.want)
			}
			if !errors.Is(err, pyvisor.ErrInvalidConfig) {
				t.Errorf("error does not match ErrInvalidConfig")
			}
			var fe *pyvisor.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tt.want, fe.Field+": ") {
				t.Errorf("errors.As(*FieldError) = %+v", fe)
			}
		})
	}
}

// slots sets the first pool's size and slots section: its devices and one
// slots.env variable (none when name is "").
func slots(workers int, devices []string, name, template string) func(*pyvisor.Config) {
	return func(c *pyvisor.Config) {
		p := &c.Pools[0]
		p.Workers, p.Slots.Devices = workers, devices
		if name != "" {
			p.Slots.Env = map[string]string{name: template}
		}
	}
}

// automanagedNode is a valid cluster section: one of two automanaged nodes.
func automanagedNode() pyvisor.ClusterConfig {
	return pyvisor.ClusterConfig{Provider: "automanaged", Node: "gpu-1",
		Automanaged: cluster.AutomanagedConfig{Port: 6331, Peers: []string{"127.0.0.1:6331", "127.0.0.1:6332"}}}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := minimal()
	c.StartTimeout = -1
	c.Pools[0].Workers = 1000
	c.Pools[0].Heartbeat.Interval = -time.Second
	err := c.Validate()
	want := "start_timeout: must not be negative, got -1ns\n" +
		"pools[0].workers: must be between 1 and 256, got 1000\n" +
		"pools[0].heartbeat.interval: must be positive, got -1s"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate:\n got %v\nwant %s", err, want)
	}
	if !errors.Is(err, pyvisor.ErrInvalidConfig) {
		t.Errorf("joined error does not match ErrInvalidConfig")
	}
}

func TestRelativePathsAreTakenFromDir(t *testing.T) {
	cfg := pyvisor.Config{Dir: "/srv/app", Python: "envs/ml/bin/python", Environments: "cache", Pools: []pyvisor.PoolConfig{
		{Name: "a", Tools: []string{"m"}, Python: "py/bin/python", Requirements: "a/requirements.txt"},
		{Name: "b", Tools: []string{"m"}, Dir: "tools/b"},
		{Name: "c", Tools: []string{"m"}, Dir: "/opt/c"},
	}}.WithDefaults()
	if cfg.Python != "/srv/app/envs/ml/bin/python" {
		t.Errorf("Python = %q", cfg.Python)
	}
	for i, want := range []string{"/srv/app", "/srv/app/tools/b", "/opt/c"} {
		if got := cfg.Pools[i].Dir; got != want {
			t.Errorf("pool %s: Dir = %q, want %q", cfg.Pools[i].Name, got, want)
		}
	}
	if a := cfg.Pools[0]; a.Python != "/srv/app/py/bin/python" || a.Requirements != "/srv/app/a/requirements.txt" || cfg.Environments != "/srv/app/cache" {
		t.Errorf("pool python %q, requirements %q, environments %q: want them under /srv/app", a.Python, a.Requirements, cfg.Environments)
	}
	if got := (pyvisor.Config{Python: "python3.12"}).WithDefaults().Python; got != "python3.12" {
		t.Errorf("a bare command is looked up in PATH, not under Dir: %q", got)
	}
}
