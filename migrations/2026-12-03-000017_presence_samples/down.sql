DROP TABLE presence_samples;
