//! Starting the container init: the launcher (caller side), the setup helper, and the
//! messages between them.
