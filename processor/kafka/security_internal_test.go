package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/scattergather/scattergather/processor/topology"
)

// The SASL password never shows in a connection error, however short: a
// short one withholds the detail rather than leave it as it was.
func TestConnectErrorHidesPassword(t *testing.T) {
	for _, pw := range []string{"Zq8-long-password", "Zq8x", "Zq8", "Zq", "Z", "é"} {
		t.Run(pw, func(t *testing.T) {
			k := &topology.Kafka{Brokers: []string{"127.0.0.1:9092"},
				SASL: &topology.SASL{Mechanism: topology.SASLPlain, Username: "alice", Password: pw}}
			err := fmt.Errorf("broker closed the connection after %q", "alice:"+pw)
			ce, _, _ := classify(err, k)
			msg := ce.Error()
			if strings.Contains(msg, pw) {
				t.Errorf("the password shows: %s", msg)
			}
			if !errors.Is(ce, err) {
				t.Error("the cause is not wrapped")
			}
			if want := "REDACTED"; len(pw) >= 4 && !strings.Contains(msg, `"alice:`+want+`"`) {
				t.Errorf("%s: want the detail with the password redacted", msg)
			}
		})
	}
	// A detail without the password is kept whole.
	k := &topology.Kafka{Brokers: []string{"b:9092"}, SASL: &topology.SASL{Password: "Z"}}
	if ce, _, _ := classify(errors.New("dial tcp: connection refused"), k); !strings.Contains(ce.Error(), "dial tcp: connection refused") {
		t.Errorf("detail lost: %s", ce.Error())
	}
}
