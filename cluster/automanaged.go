package cluster

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/labstack/echo/v4"
)

// newAutomanaged is protoactor's automanaged provider with its HTTP endpoint (the
// member state its peers poll) listening on host, the host the node binds, where
// protoactor's own would listen on every interface, and printing nothing on stdout.
// member is set once the cluster exists; until its remote endpoint has an address the
// endpoint answers 503, which its peers read as not up yet.
func newAutomanaged(cfg Config, host string, member *atomic.Pointer[pcluster.Cluster]) (pcluster.ClusterProvider, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.Automanaged.Port)))
	if err != nil {
		return nil, fmt.Errorf("cluster: automanaged port %d (another node or process on it? choose another cluster.automanaged.port): %w", cfg.Automanaged.Port, err)
	}
	e := echo.New()
	e.HideBanner, e.HidePort, e.Listener = true, true, ln
	e.GET("/_health", func(ctx echo.Context) error {
		c := member.Load()
		if c == nil {
			return ctx.NoContent(http.StatusServiceUnavailable)
		}
		h, port, err := c.ActorSystem.GetHostPort()
		if err != nil || port <= 0 {
			return ctx.NoContent(http.StatusServiceUnavailable)
		}
		return ctx.JSON(http.StatusOK, automanaged.NewNode(c.Config.Name, c.ActorSystem.ID, h, port, cfg.Automanaged.Port, c.GetClusterKinds()))
	})
	return automanaged.NewWithTesting(cfg.Automanaged.Refresh, cfg.Automanaged.Port, e, cfg.Automanaged.Peers...), nil
}
