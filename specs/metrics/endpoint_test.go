package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/pyvisor/pyvisor"
)

// listeningSockets lists the TCP sockets in LISTEN state that this process holds: the
// inodes of its socket file descriptors that /proc/self/net/tcp{,6} list as listening
// (other processes' listeners, on this shared machine, are not counted).
func listeningSockets() map[string]bool {
	GinkgoHelper()
	mine := map[string]bool{}
	fds, err := filepath.Glob("/proc/self/fd/*")
	Expect(err).NotTo(HaveOccurred())
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) >= 10 && fields[3] == "0A" && mine[fields[9]] {
				out[fields[1]+" inode "+fields[9]] = true
			}
		}
		_ = f.Close()
	}
	return out
}

var _ = Describe("The metrics endpoint", Label("python"), func() {
	It("serves the catalog over HTTP at /metrics in the text format and, when asked, in OpenMetrics", func() {
		rt := start(pool(1))
		_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
		Expect(err).NotTo(HaveOccurred())
		addr := rt.MetricsAddress()
		Expect(addr).To(HavePrefix("127.0.0.1:"))
		Expect(addr).NotTo(HaveSuffix(":0"), "the address is the real port")

		body, ctype, err := get(addr, acceptText)
		Expect(err).NotTo(HaveOccurred())
		Expect(ctype).To(HavePrefix("text/plain"))
		Expect(body).To(ContainSubstring("# TYPE pyvisor_calls_total counter"))

		body, ctype, err = get(addr, acceptOpenMetrics)
		Expect(err).NotTo(HaveOccurred())
		Expect(ctype).To(HavePrefix("application/openmetrics-text"))
		Expect(body).To(HaveSuffix("# EOF\n"))

		fams := mustScrape(rt)
		Expect(fams.Value("pyvisor_workers", L{"pool": poolName, "state": "ready"})).To(Equal(1.0))
		Expect(fams.Value("pyvisor_worker_starts_total", L{"pool": poolName, "worker": "default-0", "outcome": "ok"})).To(Equal(1.0))
		Expect(fams.Value("pyvisor_worker_startup_duration_seconds", L{"pool": poolName})).To(Equal(1.0))
		Expect(fams.Value("pyvisor_worker_memory_resident_bytes", L{"pool": poolName, "worker": "default-0"})).
			To(BeNumerically(">", 1<<20), "the Python process's RSS, read from the OS")
		Expect(fams.Series("pyvisor_queue_rejections_total", L{"pool": poolName})).To(Equal(3), "queue_full, queue_timeout and stopped, from the start")
		Expect(fams.Value("pyvisor_supervisor_escalations_total", L{"pool": poolName})).To(BeZero())
	})

	Context("when metrics are off (the default)", func() {
		It("has no address and opens no listening socket", func() {
			before := listeningSockets()
			cfg := pool(1)
			cfg.Metrics = pyvisor.MetricsConfig{}
			rt := start(cfg)
			Expect(rt.MetricsAddress()).To(BeEmpty())
			_, err := execute(rt, "add", map[string]int{"a": 1, "b": 2})
			Expect(err).NotTo(HaveOccurred())
			Expect(listeningSockets()).To(Equal(before), "no new TCP listener in this process")

			conn, err := net.DialTimeout("tcp", pyvisor.DefaultMetricsAddress, time.Second)
			if err == nil {
				_ = conn.Close()
				Expect(listeningSockets()).To(Equal(before), "whatever listens on the default port is not this runtime")
			}
		})
	})

	Context("when its port is taken", func() {
		It("fails Start with an error naming the address, and starts no worker", func() {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			Expect(err).NotTo(HaveOccurred())
			defer taken.Close()
			cfg := pool(1)
			cfg.Metrics.Address = taken.Addr().String()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rt, err := pyvisor.Start(ctx, cfg)
			Expect(rt).To(BeNil())
			Expect(err).To(MatchError(And(
				ContainSubstring("metrics endpoint cannot listen on "+taken.Addr().String()),
				ContainSubstring("address already in use"),
			)))
			fmt.Fprintln(GinkgoWriter, "Start said:", err)
		})
	})
})
