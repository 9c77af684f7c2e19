package hostxds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// hashOf identifies a resource's content: envoyhost keeps what did not
// change (Envoy skips identical updates), so equal content must hash equal.
func hashOf(ms ...proto.Message) (string, error) {
	h := sha256.New()
	for _, m := range ms {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return "", err
		}
		h.Write([]byte(strconv.Itoa(len(b))))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// protoMap is m in proto3 JSON with the field names of Envoy's YAML, as a
// map the translation can edit.
func protoMap(m proto.Message) (map[string]any, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, json.Unmarshal(b, &out)
}

func joinHostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}
