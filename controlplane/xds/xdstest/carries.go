package xdstest

import (
	"bytes"

	"google.golang.org/protobuf/proto"
)

// Carrying returns a resource the client holds whose wire form contains
// secret (nil for none): tests use it to show a credential never reaches
// xDS.
func (s *State) Carrying(secret string) proto.Message {
	var all []proto.Message
	for _, m := range s.Listeners {
		all = append(all, m)
	}
	for _, m := range s.Routes {
		all = append(all, m)
	}
	for _, m := range s.Clusters {
		all = append(all, m)
	}
	for _, m := range s.Endpoints {
		all = append(all, m)
	}
	for _, m := range s.Extensions {
		all = append(all, m)
	}
	for _, m := range all {
		b, err := proto.Marshal(m)
		if err != nil || bytes.Contains(b, []byte(secret)) {
			return m // one that cannot be marshalled cannot be vouched for
		}
	}
	return nil
}
