-- Every message moves its conversation's updated_at (0006); an index over updated_at made each
-- message rewrite an index entry. Nothing reads conversations in updated_at order: the queue is
-- read by status alone.
DROP INDEX conversations_by_store_status;
CREATE INDEX conversations_by_status ON conversations (status);
