"""Apply: the runner and the stages of one attempt under the lock."""
