-- The waiting room (src/room.rs, lua/room.lua): a sale may open a room this many seconds before
-- its start (NULL: no room, the first second is a race as before), letting tickets through at
-- `room_rate` per second (NULL: the FLASHGATE_ROOM_RATE setting).
ALTER TABLE seckill_goods
    ADD COLUMN room_opens_secs INT NULL,
    ADD COLUMN room_rate DOUBLE NULL;
