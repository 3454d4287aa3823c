"""Organizations, projects, memberships, invitations: who belongs where, with which role."""
