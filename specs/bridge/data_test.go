package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/pyvisor/pyvisor/bridge"
	"github.com/pyvisor/pyvisor/specs/internal/harness"
)

// randomBytes is n bytes no two specs share.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// echo sends payload to the tool echo_payload and returns what came back.
func echo(p *bridge.Process, payload []byte, view bool) (bridge.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Client().Execute(ctx, bridge.Request{Tool: "echo_payload", Payload: payload, View: view})
}

// inMapping reports whether b's memory lies in a mapping of this process whose name
// contains name (a memfd shows as /memfd:<name> in /proc/self/maps).
func inMapping(b []byte, name string) bool {
	at := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	maps, err := os.ReadFile("/proc/self/maps")
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(maps), "\n") {
		if !strings.Contains(line, name) {
			continue
		}
		lo, hi, _ := strings.Cut(strings.Fields(line)[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		if start <= at && at+uint64(len(b)) <= end {
			return true
		}
	}
	return false
}

var _ = Describe("Payloads through shared memory", Label("python"), func() {
	small := func(s bridge.SharedMemory) bridge.Option { return bridge.WithSharedMemory(s) }

	It("reach the tool as a read-only view of shared memory, read in place", func() {
		p, _ := worker()
		info := decodedReq(p, bridge.Request{Tool: "payload_info", Payload: randomBytes(1 << 20)})
		Expect(info).To(Equal(map[string]any{"size": 1048576.0, "type": "memoryview", "readonly": true, "shared": true}))
		info = decodedReq(p, bridge.Request{Tool: "payload_info", Payload: []byte("tiny")})
		Expect(info).To(HaveKeyWithValue("shared", false), "below the threshold it stays in the frame")
	})

	It("round-trip byte-exact at every size, past the old 16 MiB limit", func() {
		p, _ := worker()
		for _, n := range []int{0, 100, 64<<10 - 1, 64 << 10, 1<<20 + 3, 20 << 20} {
			in := randomBytes(n)
			res, err := echo(p, in, false)
			Expect(err).NotTo(HaveOccurred(), "%d bytes", n)
			Expect(bytes.Equal(res.Payload, in)).To(BeTrue(), "%d bytes came back different", n)
			Expect(string(res.JSON)).To(Equal("null"))
		}
	})

	It("hand a result over as a view of the worker's memory, held until Release", func() {
		p, _ := worker(small(bridge.SharedMemory{OutputBytes: 4 << 20}))
		in := randomBytes(3 << 20)
		held, err := echo(p, in, true)
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(held.Payload, in)).To(BeTrue())
		Expect(inMapping(held.Payload, "memfd:pyvisor-out-spec-0")).To(BeTrue(), "the payload is the worker's own memory, not a copy")

		By("holding the worker's output arena full until the view is released")
		second := make(chan error, 1)
		go func() {
			res, err := echo(p, in, false)
			if err == nil && !bytes.Equal(res.Payload, in) {
				err = errors.New("second result differs")
			}
			second <- err
		}()
		Consistently(second).WithTimeout(300 * time.Millisecond).ShouldNot(Receive())
		held.Release()
		held.Release() // a second Release does nothing
		Eventually(second).Should(Receive(BeNil()))

		copied, err := echo(p, in, false)
		Expect(err).NotTo(HaveOccurred())
		Expect(inMapping(copied.Payload, "memfd:")).To(BeFalse(), "without a view, the result is a copy on the Go heap")
	})

	It("matches 32 concurrent large calls to their own callers", func() {
		p, _ := worker()
		var wg sync.WaitGroup
		failures := make(chan string, 32)
		for i := range 32 {
			wg.Go(func() {
				defer GinkgoRecover()
				in := randomBytes(1<<20 + i)
				res, err := echo(p, in, i%2 == 0)
				defer res.Release()
				if err != nil || !bytes.Equal(res.Payload, in) {
					failures <- fmt.Sprintf("caller %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		close(failures)
		Expect(failures).To(BeEmpty())
	})

	It("hold a call back while the input memory is full, up to its deadline, and free a cancelled call's payload once its body is over", func() {
		p, _ := worker(small(bridge.SharedMemory{InputBytes: 4 << 20}))
		holdCtx, release := context.WithCancel(context.Background())
		held := make(chan error, 1)
		go func() {
			_, err := p.Client().Execute(holdCtx, bridge.Request{Tool: "hold_payload", Args: map[string]float64{"seconds": 30}, Payload: randomBytes(3 << 20)})
			held <- err
		}()
		Eventually(p.Client().Running).Should(Equal(1))

		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := p.Client().Execute(ctx, bridge.Request{Tool: "payload_size", Payload: randomBytes(3 << 20)})
		Expect(err).To(MatchError(context.DeadlineExceeded))
		Expect(err.Error()).To(ContainSubstring("waiting for shared memory"))

		release()
		Expect(<-held).To(MatchError(context.Canceled))
		Eventually(p.Client().Running).Should(Equal(0))
		Expect(decodedReq(p, bridge.Request{Tool: "payload_size", Payload: randomBytes(3 << 20)})).To(BeNumerically("==", 3<<20))
	})

	It("refuse a payload or result over the cap at once with ErrMessageTooLarge, and serve on", func() {
		p, _ := worker(small(bridge.SharedMemory{MaxPayload: 1 << 20}))
		_, err := echo(p, randomBytes(1<<20+1), false)
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))
		_, err = call(p, "large", map[string]int{"size": 2 << 20})
		Expect(err).To(MatchError(bridge.ErrMessageTooLarge))
		stillServes(p)
	})

	It("fail the calls of a worker killed mid-transfer, and leave no shared memory behind", func() {
		p, _ := worker()
		failed := make(chan error, 1)
		go func() {
			_, err := p.Client().Execute(context.Background(), bridge.Request{Tool: "hold_payload", Args: map[string]float64{"seconds": 30}, Payload: randomBytes(16 << 20)})
			failed <- err
		}()
		Eventually(p.Client().Running).Should(Equal(1))
		Expect(syscall.Kill(p.PID(), syscall.SIGKILL)).To(Succeed())
		Eventually(failed).Should(Receive(MatchError(bridge.ErrWorkerCrashed)))
		// The leak check after the spec finds no arena mapped or open.
	})

	It("fail a call whose worker forges a handle with ErrProtocolViolation, and the worker with it, never reading outside the arena", func() {
		p, _ := worker(bridge.WithTools("data_tools"), bridge.WithEnv("PYTHONPATH", testdataTools),
			small(bridge.SharedMemory{OutputBytes: 8 << 20}))
		_, err := call(p, "forge", map[string]uint64{"offset": 1 << 40, "length": 1 << 20})
		Expect(err).To(MatchError(bridge.ErrProtocolViolation))
		Expect(err.Error()).To(ContainSubstring("out of range"))
		Eventually(p.Done()).Should(BeClosed())
		Expect(p.Err()).To(MatchError(bridge.ErrWorkerCrashed))
	})

	It("fail a call whose worker forges an array's handle or describes it wrongly with ErrProtocolViolation, and the worker with it", func() {
		for _, forged := range []struct {
			tool   string
			args   any
			detail string
		}{
			{"forge_array", map[string]uint64{"offset": 1 << 40, "length": 1 << 20}, "out of range"},
			{"misshapen_array", nil, "is 20 bytes, the data 16"},
		} {
			p, _ := worker(bridge.WithTools("data_tools"), bridge.WithEnv("PYTHONPATH", testdataTools),
				small(bridge.SharedMemory{OutputBytes: 8 << 20}))
			_, err := call(p, forged.tool, forged.args)
			Expect(err).To(MatchError(bridge.ErrProtocolViolation), forged.tool)
			Expect(err.Error()).To(ContainSubstring(forged.detail))
			Eventually(p.Done()).Should(BeClosed())
		}
	})

	It("stream large chunks through shared memory, each byte-exact, while the worker's memory holds only a few", func() {
		p, _ := worker(small(bridge.SharedMemory{OutputBytes: 8 << 20}))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n := 0
		for res, err := range p.Client().ExecuteStream(ctx, bridge.Request{Tool: "frames", Args: map[string]int{"n": 40, "size": 1 << 20}}) {
			Expect(err).NotTo(HaveOccurred())
			Expect(bytes.Equal(res.Payload, bytes.Repeat([]byte{byte(n)}, 1<<20))).To(BeTrue(), "chunk %d", n)
			n++
		}
		Expect(n).To(Equal(40))
	})

	It("travel in the frames when shared memory is off, as before", func() {
		p, _ := worker(small(bridge.SharedMemory{Off: true}))
		info := decodedReq(p, bridge.Request{Tool: "payload_info", Payload: randomBytes(1 << 20)})
		Expect(info).To(HaveKeyWithValue("shared", false))
		Expect(info).To(HaveKeyWithValue("type", "bytes"))
		Expect(harness.SharedMemoryInUse()).To(BeZero())
	})
})

// decodedReq is the JSON result of a request that must succeed.
func decodedReq(p *bridge.Process, req bridge.Request) any {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := p.Client().Execute(ctx, req)
	Expect(err).NotTo(HaveOccurred())
	var v any
	Expect(res.Decode(&v)).To(Succeed())
	return v
}

var _ = Describe("When the Go host dies with a payload in shared memory", Label("python", "slow"), func() {
	It("leaves no process, memfd or mapping of its arenas anywhere, and nothing in /dev/shm", func() {
		hostBin, err := gexec.Build("github.com/pyvisor/pyvisor/specs/bridge/testdata/datahost")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		shmBefore, _ := filepath.Glob("/dev/shm/*")

		name := fmt.Sprintf("datahost-%d", GinkgoRandomSeed()%100000+int64(os.Getpid()))
		host := exec.Command(hostBin, runtimeDir, name)
		host.Env = append(os.Environ(), "PYVISOR_PYTHON="+python)
		host.Stderr = GinkgoWriter
		stdout, err := host.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		Expect(host.Start()).To(Succeed())
		var workerPID int
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		_, err = fmt.Sscanf(line, "%d", &workerPID)
		Expect(err).NotTo(HaveOccurred())
		Expect(holders(name)).To(ContainElements(host.Process.Pid, workerPID), "both sides map the arenas")

		Expect(host.Process.Signal(syscall.SIGKILL)).To(Succeed())
		_ = host.Wait()
		Eventually(func() bool { return harness.Alive(workerPID) }).WithTimeout(2 * time.Second).Should(BeFalse())
		Eventually(func() []int { return holders(name) }).WithTimeout(2 * time.Second).Should(BeEmpty())
		Expect(filepath.Glob("/dev/shm/*")).To(Equal(shmBefore))
	})
})

// holders are the processes that have a memfd of the worker named name open or mapped.
func holders(name string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, proc := range procs {
		pid, _ := strconv.Atoi(filepath.Base(proc))
		maps, _ := os.ReadFile(filepath.Join(proc, "maps"))
		held := bytes.Contains(maps, []byte("memfd:pyvisor-out-"+name))
		fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && strings.Contains(t, "memfd:pyvisor-out-"+name) {
				held = true
			}
		}
		if held {
			pids = append(pids, pid)
		}
	}
	return pids
}
