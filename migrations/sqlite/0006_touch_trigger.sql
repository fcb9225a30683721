-- A conversation's updated_at follows its newest message, inside the statement that stores the
-- message (one statement per shopper message instead of two).
CREATE TRIGGER messages_touch_conversation AFTER INSERT ON messages
BEGIN
    UPDATE conversations SET updated_at = NEW.created_at WHERE id = NEW.conversation_id;
END;
