//! PostgreSQL frontend/backend protocol version 3.
