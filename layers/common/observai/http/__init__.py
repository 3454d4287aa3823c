"""HTTP plumbing shared by every API function: resolver factory, envelope, error mapping, auth dependencies."""
