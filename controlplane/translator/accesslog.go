package translator

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// fileAccessLoggerName is Envoy's file access logger.
const fileAccessLoggerName = "envoy.access_loggers.file"

// accessLogs is the HCM's access log: one file logger in the configured
// format. Its bytes depend on the access_log section alone, so no model,
// pool or cost edit changes (and drains) a listener.
func accessLogs(a *spec.AccessLog) ([]*accesslogv3.AccessLog, error) {
	if !a.On() {
		return nil, nil
	}
	format := &corev3.SubstitutionFormatString{}
	if text := a.EffectiveText(); text != "" {
		format.Format = &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: text}}}
	} else {
		s, err := structpb.NewStruct(a.EffectiveJSON())
		if err != nil {
			return nil, fmt.Errorf("%w: access_log.json_format: %w", ErrTranslate, err)
		}
		format.Format = &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}
	}
	cfg, err := typed("file access log", &filev3.FileAccessLog{
		Path:            a.EffectivePath(),
		AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: format},
	})
	if err != nil {
		return nil, err
	}
	return []*accesslogv3.AccessLog{{
		Name:       fileAccessLoggerName,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: cfg},
	}}, nil
}
