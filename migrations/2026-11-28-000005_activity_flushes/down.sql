DROP TABLE activity_flushes;
