package router

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/inflow-gateway/inflow/filter/config"
)

// modelObject is one entry of OpenAI's GET /v1/models list.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// renderModelList renders the client-facing models once per config.
func renderModelList(models []config.Model, created int64) ([]byte, error) {
	list := modelList{Object: "list", Data: make([]modelObject, 0, len(models))}
	for _, m := range models {
		owner := m.OwnedBy
		if owner == "" {
			owner = "inflow"
		}
		list.Data = append(list.Data, modelObject{ID: m.Name, Object: "model", Created: created, OwnedBy: owner})
	}
	slices.SortFunc(list.Data, func(a, b modelObject) int { return strings.Compare(a.ID, b.ID) })
	return json.Marshal(list)
}
