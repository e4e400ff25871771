"""The backend's repositories: the SQL behind one user action each, one transaction each."""
