package protocol

import "testing"

func TestStatNamesKeepOneSegmentPerPart(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{PoolStat("gpu.a", PoolStatSheds), "inflow.pool.gpu_a.sheds_total"},
		{EndpointStat("gpu", "10.0.0.1:8000", EndpointStatPicks), "inflow.pool.gpu.endpoint.10_0_0_1_8000.picks_total"},
		{EndpointStat("gpu", "[fd00::1]:8000", EndpointStatPicks), "inflow.pool.gpu.endpoint.fd00__1_8000.picks_total"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
