//! Linux namespaces of `linux.namespaces`: new ones become clone flags, ones with a path are
//! joined with setns.
