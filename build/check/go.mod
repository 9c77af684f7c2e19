module github.com/inflow-gateway/inflow/build/check

go 1.26.8
