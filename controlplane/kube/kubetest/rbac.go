package kubetest

import (
	"bytes"
	"context"
	"os"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// BindShipped creates in namespace ns the Role that is the first document
// of a shipped rbac.yaml and binds it to a new user instead of the
// ServiceAccount, whose client config it returns: tests then do the whole
// job under exactly that Role (the API server enforces RBAC).
func (c *Cluster) BindShipped(t testing.TB, ns, path, user string) *rest.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	if err := yaml.UnmarshalStrict(bytes.Split(data, []byte("\n---\n"))[0], &role); err != nil || role.Kind != "Role" {
		t.Fatalf("%s: first document is not a Role: %v", path, err)
	}
	role.Namespace = ns
	kc, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kc.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + user, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := kc.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.User(user)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
