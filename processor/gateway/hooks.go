package gateway

import "time"

// Hook observes a gateway, as kafka.Hook observes the roles: any value
// that implements one or more of the Hook* interfaces below. Hooks are
// called from the HTTP handlers and the reading loop, possibly at once:
// they must be quick and safe for concurrent use. The metrics package
// implements every one for Prometheus.
type Hook any

// OtherFlow is the flow hooks are told for a request to a flow the
// gateway does not serve: the path is the client's, and must not grow the
// metrics' series without bound.
const OtherFlow = "_other"

type (
	// HookResponse is told each response to a flow request: its flow
	// (OtherFlow for an unknown one), method, status code, and the time
	// from the request's arrival to its response.
	HookResponse interface {
		OnGatewayResponse(flow, method string, status int, took time.Duration)
	}
	// HookWaiting is told each request that starts (+1) and stops (-1)
	// waiting for its aggregate.
	HookWaiting interface {
		OnGatewayWaiting(flow string, delta int)
	}
	// HookAggregateRead is told each aggregate the gateway read into its
	// index, and its size as JSON.
	HookAggregateRead interface {
		OnGatewayAggregateRead(flow string, bytes int)
	}
)

func each[H any](hs []Hook, fn func(H)) {
	for _, h := range hs {
		if h, ok := h.(H); ok {
			fn(h)
		}
	}
}
