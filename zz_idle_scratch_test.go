package pyvisor_test

import (
	"testing"
	"time"
)

func BenchmarkZZIdle(b *testing.B) {
	python := benchPython(b)
	startBenchCluster(b, python,
		benchNode{name: "b", pools: map[string]int{"remote": 1}},
		benchNode{name: "a", pools: map[string]int{"local": 1, "self": 1}, host: []string{"self"}},
	)
	time.Sleep(2 * time.Second)
	for b.Loop() {
		cpu := goCPUTime()
		time.Sleep(5 * time.Second)
		b.ReportMetric(float64(goCPUTime()-cpu)/5e6, "ms-cpu/s")
	}
}
func BenchmarkZZIdleNoCluster(b *testing.B) {
	python := benchPython(b)
	startBenchRuntime(b, python, 1)
	startBenchRuntime(b, python, 2)
	time.Sleep(2 * time.Second)
	for b.Loop() {
		cpu := goCPUTime()
		time.Sleep(5 * time.Second)
		b.ReportMetric(float64(goCPUTime()-cpu)/5e6, "ms-cpu/s")
	}
}
