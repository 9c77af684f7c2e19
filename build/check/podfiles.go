package check

import (
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
)

// PodFile is what a path inside a container is mounted from: a ConfigMap
// entry (with its content) or a Secret key (which the user creates, so
// only its name is known).
type PodFile struct {
	ConfigMap, Secret, Key string
	// Data is the ConfigMap entry's content.
	Data string
	// Optional is set for a Secret the pod starts without.
	Optional bool
}

// ResolvePodPath finds the volume mounted at path's directory in c (whole
// volumes only: a subPath mount is never updated, so a rotated file would
// not be seen) and the entry of it that path names. ConfigMap entries must
// exist in cms; Secret keys are taken on trust.
func ResolvePodPath(pod corev1.PodSpec, c corev1.Container, cms map[string]*corev1.ConfigMap, p string) (PodFile, error) {
	dir, key := path.Split(p)
	dir = path.Clean(dir)
	var vol *corev1.Volume
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != dir {
			continue
		}
		if m.SubPath != "" {
			return PodFile{}, fmt.Errorf("%s: mounted with subPath, so updates never reach it", p)
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
	}
	if vol == nil {
		return PodFile{}, fmt.Errorf("%s: no volume is mounted at %s in container %s", p, dir, c.Name)
	}
	var sources []corev1.VolumeProjection
	switch {
	case vol.ConfigMap != nil:
		sources = append(sources, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: vol.ConfigMap.LocalObjectReference}})
	case vol.Secret != nil:
		sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: vol.Secret.SecretName}, Optional: vol.Secret.Optional,
		}})
	case vol.Projected != nil:
		sources = vol.Projected.Sources
	default:
		return PodFile{}, fmt.Errorf("%s: volume %s is neither a ConfigMap, a Secret nor a projection of them", p, vol.Name)
	}
	var secret *corev1.SecretProjection
	for _, s := range sources {
		switch {
		case s.ConfigMap != nil:
			cm := cms[s.ConfigMap.Name]
			if cm == nil {
				return PodFile{}, fmt.Errorf("%s: ConfigMap %s is not in the manifests", p, s.ConfigMap.Name)
			}
			if data, ok := cm.Data[key]; ok {
				return PodFile{ConfigMap: cm.Name, Key: key, Data: data}, nil
			}
		case s.Secret != nil && secret == nil:
			secret = s.Secret
		}
	}
	if secret == nil {
		return PodFile{}, fmt.Errorf("%s: no ConfigMap of volume %s has %q, and it projects no Secret", p, vol.Name, key)
	}
	return PodFile{Secret: secret.Name, Key: key, Optional: secret.Optional != nil && *secret.Optional}, nil
}
